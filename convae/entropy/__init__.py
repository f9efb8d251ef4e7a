"""Entropy models and coders: quantiser, learned priors, factorized and hyperprior ANS coders."""
