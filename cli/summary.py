"""The rows of a compress/decompress/merge summary table: what the user got, in words where a number alone
would puzzle (a PSNR only --verify measures, a rate target met or missed, colour coded as gray)."""

from __future__ import annotations

from typing import Any


def summary_rows(result: dict[str, Any]) -> dict[str, Any]:
    """``result``'s scalar items, then its ``verify`` report, with the special ones spelt out."""
    rows = {k: v for k, v in result.items() if not isinstance(v, (list, dict))}
    if "psnr" in rows and rows["psnr"] is None:
        rows["psnr"] = "--verify"  # measured only when the codes are decoded too
    if "quality" in rows and rows["quality"] is None:
        rows["quality"] = "-"  # a single-rate variant
    if "colour_as_gray" in rows:
        rows["gray"] = f"{rows.pop('colour_as_gray')} colour images coded as gray"
    target = result.get("target")
    if target:
        rows |= _target_rows(target)
    return rows | result.get("verify", {})


def _target_rows(target: dict[str, Any]) -> dict[str, str]:
    """``--target-psnr``/``--max-bpp``: the target, the quality picked (met or missed) and every quality tried."""
    want = " and ".join(w for w in (f"psnr >= {target['psnr']}" if target["psnr"] is not None else "",
                                    f"bpp <= {target['max_bpp']}" if target["max_bpp"] is not None else "") if w)
    got = "met" if target["met"] else f"missed ({', '.join(target['missed'])}): the nearest quality kept"
    tried = "; ".join(f"q{t['quality']} {t['bpp']:.3f} bpp {t['psnr']:.2f} dB" for t in target["tried"])
    return {"target": f"{want} (whole job)", "picked": f"quality {target['quality']}, {got}", "tried": tried}
