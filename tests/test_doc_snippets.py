"""scripts/run_doc_snippets.py, which CI runs on docs/ and README.md: every python block runs, and a text
block right after one is compared with what it printed (doctest rules: ``...`` matches anything)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FENCE = "`" * 3


def run_snippets(tmp_path, markdown: str):
    page = tmp_path / "page.md"
    page.write_text(markdown)
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "run_doc_snippets.py"), str(page)],
                          capture_output=True, text=True, timeout=60)


def page(code: str, output: str | None, between: str = "\n") -> str:
    text = f"{FENCE}python\n{code}\n{FENCE}\n"
    body = f"{output}\n" if output else ""
    return text + (f"{between}{FENCE}text\n{body}{FENCE}\n" if output is not None else "")


def test_matching_output_passes(tmp_path):
    result = run_snippets(tmp_path, page("x = 6 * 7\nprint(x, 'at', '/tmp/abc')", "42   at ..."))
    assert result.returncode == 0, result.stdout
    assert "1 of 1 python blocks ran, 1 outputs checked" in result.stdout


def test_other_output_fails_and_shows_both(tmp_path):
    result = run_snippets(tmp_path, page("print(6 * 7)", "41"))
    assert result.returncode == 1
    assert "printed other output" in result.stdout and "41" in result.stdout and "42" in result.stdout


def test_exception_fails_and_later_blocks_share_the_namespace(tmp_path):
    assert run_snippets(tmp_path, page("y = 1", None) + page("print(y + 1)", "2")).returncode == 0
    result = run_snippets(tmp_path, page("raise ValueError('boom')", None))
    assert result.returncode == 1 and "ValueError: boom" in result.stdout


def test_text_block_after_prose_is_not_an_output(tmp_path):
    result = run_snippets(tmp_path, page("print(1)", "not what it prints", between="\nSome prose.\n\n"))
    assert result.returncode == 0 and "0 outputs checked" in result.stdout


def test_last_block_without_newline_runs_and_empty_output_means_silence(tmp_path):
    result = run_snippets(tmp_path, f"{FENCE}python\nraise SystemError('ran')\n{FENCE}")
    assert result.returncode == 1 and "ran" in result.stdout
    assert run_snippets(tmp_path, page("x = 1", "")).returncode == 0
    assert run_snippets(tmp_path, page("print('noise')", "")).returncode == 1
