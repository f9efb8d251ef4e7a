"""The command line as people meet it (issue 22): -q is the quality, one-line usage errors, readable help,
JSON Lines, a progress bar with a known total, `convae models` that says when nothing matches."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys

import pytest
from convae.cli.app import DEFAULT_MODEL, app

from tests.codec_util import invoke, ok, one_line_error, read_manifest
from tests.conftest import make_images, write_pngs

COMMANDS = ("models", "train", "eval", "compress", "decompress", "info", "merge")
BOX = "╭│╰─"  # Rich panel borders: a usage error must not come in a box
WIDE = {"COLUMNS": "200", "TERMINAL_WIDTH": "200"}


def usage_error(result, *needles: str) -> str:
    """Assert a usage error: exit 2, one `convae: error:` line on stderr containing ``needles``, no box."""
    err = one_line_error(result, 2)
    assert not any(c in result.output for c in BOX), result.output
    for needle in needles:
        assert needle in err, err
    return err


def convae(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m convae ARGS...`` in a subprocess (the real entry point, not CliRunner)."""
    return subprocess.run([sys.executable, "-m", "convae", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def test_unknown_command_is_one_line_with_a_suggestion():
    r = convae("compres")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == "convae: error: no such command 'compres'; did you mean 'compress'?\n"


def test_usage_errors_are_one_line_exit_2(runner, tmp_path, image_folder):
    out = tmp_path / "o.npy"
    usage_error(invoke(runner, "decompress", out), "decompress: missing argument 'OUT_DIR'",
                "usage: convae decompress [OPTIONS] CODES.npy OUT_DIR")
    usage_error(invoke(runner, "compress"), "missing argument 'INPUT... OUT.npy'")
    usage_error(invoke(runner, "compress", image_folder, out, "--batch-size", "many"), "--batch-size")
    usage_error(invoke(runner, "compress", image_folder, out, "--on-error", "maybe"), "'maybe'", "'stop', 'skip'")
    usage_error(invoke(runner, "compress", image_folder, out, "--device", "gpu"), "--device", "'gpu'")
    usage_error(invoke(runner, "compress", image_folder, out, "--forse"), "no such option --forse",
                "did you mean", "--force?")
    usage_error(invoke(runner, "frobnicate"), "no such command 'frobnicate'", "the commands are models, train")
    assert not list(tmp_path.glob("o.*"))


def test_output_without_npy_suffix_is_a_usage_error(runner, tmp_path, image_folder):
    usage_error(invoke(runner, "compress", image_folder, tmp_path / "out.png"), "'" + str(tmp_path / "out.png"),
                "must end in .npy", "usage: convae compress INPUT... OUT.npy")
    usage_error(invoke(runner, "merge", tmp_path / "a.npy", tmp_path / "all"), "must end in .npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]


def test_a_number_after_a_flag_is_refused_in_one_line(runner, tmp_path, image_folder):
    out = tmp_path / "o.npy"
    err = usage_error(invoke(runner, "compress", image_folder, out, "--quiet", "3"))
    assert err == "convae: error: compress: --quiet takes no value; did you mean --quality 3?"
    usage_error(invoke(runner, "compress", image_folder, out, "--raw", "2"), "--raw takes no value (got '2')")
    usage_error(invoke(runner, "decompress", out, tmp_path / "r", "--force", "1"), "--force takes no value")
    for command in (("decompress", out, tmp_path / "r"), ("merge", out, tmp_path / "all.npy")):
        for old in (("-q",), ("-q", "3")):  # the old quiet flag, and the cwebp habit where no quality applies
            usage_error(invoke(runner, *command, *old), f"{command[0]}: no option -q here", "--quality", "--quiet")
    assert not out.exists() and not (tmp_path / "r").exists()


def test_dash_q_is_the_quality_on_compress_and_eval(runner, tmp_path, image_folder):
    out = tmp_path / "o.npy"
    ok(invoke(runner, "compress", image_folder, out, "--model", "fm-q3", "-q", "1", "--quiet"))
    assert read_manifest(out)["model"]["variant"] == "fm-q1"
    r = invoke(runner, "eval", "--model", "fm-q3", "-q", "2", "--data", image_folder, "--limit", "4", "--json")
    ok(r)
    assert json.loads(r.stdout)["variant"] == "fm-q2"
    usage_error(invoke(runner, "eval", "--model", "fm-q3", "-q", "9", "--data", image_folder), "--quality 9",
                "ships qualities 1, 2, 3, 4")
    usage_error(invoke(runner, "eval", "--rd", "-q", "1"), "--quality does not apply to --rd")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_metavars_not_python_types(runner, command):
    long = runner.invoke(app, [command, "--help"], env=WIDE)
    short = runner.invoke(app, [command, "-h"], env=WIDE)
    ok(long)
    assert short.exit_code == 0 and short.stdout == long.stdout
    text = long.stdout
    for python in ("<bool>", "<int>", "<str>", "<float>", "<Path>", "<list[", "{", "<stop|skip>"):
        assert python not in text, (python, text)
    assert "-h" in text and "Example:" in text
    if command in ("train", "compress", "decompress"):
        assert re.search(r"--device\s.*\[auto\|cpu\|cuda\].*\[default: auto\]", text), text


def test_help_usage_lines_choices_default_model_and_quality_range(runner):
    def help_of(command: str) -> str:
        r = runner.invoke(app, [command, "--help"], env=WIDE)
        ok(r)
        return r.stdout

    compress = help_of("compress")
    assert "Usage: convae compress [OPTIONS] INPUT... OUT.npy" in compress
    assert re.search(r"--on-error\s+\[stop\|skip\]", compress)
    assert re.search(r"--quality\s+-q\s+N\s", compress) and "Quality 0-100" in compress
    assert f"default {DEFAULT_MODEL}" in compress and re.search(r"--model\s+-m\s+NAME\|PATH", compress)
    assert "JSON Lines" in compress
    assert "Usage: convae decompress [OPTIONS] CODES.npy OUT_DIR" in help_of("decompress")
    assert "Usage: convae merge [OPTIONS] SHARD.npy... OUT.npy" in help_of("merge")
    assert "Usage: convae info [OPTIONS] CODES.npy" in help_of("info")
    assert "Usage: convae models [OPTIONS] [PATTERN]" in help_of("models")
    assert re.search(r"--quality\s+-q\s+N", help_of("eval"))
    for command in COMMANDS:
        assert not re.search(r"--quiet\s+-q", help_of(command)), command


def test_the_help_constants_are_the_zoos():
    from convae.codec.api import COLOUR_MODEL
    from convae.zoo import DEFAULT_MODEL as default
    from convae.zoo import load_model

    assert default == DEFAULT_MODEL == COLOUR_MODEL
    assert hasattr(load_model(default).model, "set_quality")  # the help's "Quality 0-100 ... the default"


def test_version_and_bare_convae(runner):
    for flag in ("-V", "--version"):
        r = runner.invoke(app, [flag])
        ok(r)
        assert re.fullmatch(r"convae \d+\.\d+\.\S+\n", r.stdout)
    bare = runner.invoke(app, [], env=WIDE)
    assert bare.exit_code == 0 and "Usage: convae [OPTIONS] COMMAND" in bare.stdout


def test_model_names_complete_in_the_shell(tmp_path):
    env = {"_CONVAE_COMPLETE": "complete_bash", "COMP_WORDS": "convae compress --model fmh-q", "COMP_CWORD": "3"}
    r = convae(env=env)
    assert r.returncode == 0 and r.stdout.split() == [f"fmh-q{q}" for q in range(1, 6)], r.stderr
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "mine.safetensors").write_bytes(b"")
    files = subprocess.run([sys.executable, "-m", "convae"], capture_output=True, text=True, cwd=tmp_path,
                           env={**os.environ, **env, "COMP_WORDS": "convae decompress --model w/"}, timeout=120)
    assert files.stdout.split() == ["w/mine.safetensors"], files.stderr


def test_models_json_lines_and_the_default_marked(runner):
    r = runner.invoke(app, ["models", "--json"])
    ok(r)
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) > 10 and [row["name"] for row in rows if row["default"]] == [DEFAULT_MODEL]
    fm = runner.invoke(app, ["models", "fm-*", "--json"])
    assert [json.loads(line)["name"] for line in fm.stdout.splitlines()] == [f"fm-q{q}" for q in range(1, 5)]
    table = runner.invoke(app, ["models", "photo*"], env=WIDE)
    ok(table)
    assert f"{DEFAULT_MODEL} *" in table.stdout and "* the default model" in table.stdout


def test_models_matching_nothing_is_an_error(runner):
    r = runner.invoke(app, ["models", "xyz*"])
    err = one_line_error(r, 1, "'xyz*'")
    assert "no registered model matches" in err and r.stdout == ""


def test_every_json_output_is_json_lines(runner, tiny_model, tmp_path, image_folder):
    log = []
    for i in (1, 2):  # a loop appending to one log stays parseable line by line
        r = invoke(runner, "compress", image_folder, tmp_path / f"c{i}.npy", "--model", tiny_model, "--json",
                   "--shard", f"{i}/2")
        ok(r)
        assert r.stdout.count("\n") == 1
        log.append(r.stdout)
    parts = [json.loads(line) for line in "".join(log).splitlines()]
    assert [p["images"] for p in parts] == [6, 6]
    merged = invoke(runner, "merge", tmp_path / "c1.npy", tmp_path / "c2.npy", tmp_path / "all.npy", "--json")
    back = invoke(runner, "decompress", tmp_path / "all.npy", tmp_path / "r", "--model", tiny_model, "--json")
    info = invoke(runner, "info", tmp_path / "all.npy", "--json")
    for r in (merged, back, info):
        ok(r)
        assert r.stdout.count("\n") == 1 and isinstance(json.loads(r.stdout), dict)
    assert json.loads(back.stdout)["images"] == 12


def run_on_a_terminal(args: list[str]) -> tuple[int, str]:
    """Run ``python -m convae ARGS`` with stderr on a pseudo-terminal; its exit code and what the terminal got."""
    import pty

    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm", **WIDE}
    proc = subprocess.Popen([sys.executable, "-m", "convae", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    seen = b""
    while True:  # read as it comes: a full terminal buffer would block the bar
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    proc.stdout.close()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen.decode("utf-8", "replace"))
    return proc.wait(timeout=60), text


def test_progress_bar_counts_with_the_total_known_rate_elapsed_and_eta(tiny_model, tmp_path):
    src = tmp_path / "src"
    write_pngs(src, make_images(40, seed=4))
    code, shown = run_on_a_terminal(["compress", str(src), str(tmp_path / "a.npy"), "--model", str(tiny_model),
                                     "--batch-size", "8"])
    assert code == 0, shown
    assert "40/40" in shown and re.search(r"\d+ img/s", shown) and re.search(r"\d:\d\d:\d\d", shown), shown
    assert "/?" not in shown, shown  # the total is known before the first frame
    code, shown = run_on_a_terminal(["decompress", str(tmp_path / "a.npy"), str(tmp_path / "r"), "--model",
                                     str(tiny_model), "--batch-size", "8"])
    assert code == 0 and "40/40" in shown and "/?" not in shown, shown
    code, quiet = run_on_a_terminal(["decompress", str(tmp_path / "a.npy"), str(tmp_path / "r2"), "--model",
                                     str(tiny_model), "--quiet"])
    assert code == 0 and quiet.strip() == "", quiet
