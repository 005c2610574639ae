"""The docs run: every ```python block of README.md and docs/**/*.md is
executed, each in a fresh Python process (a temporary working directory,
KERAS_EGF_DOCS_EPOCHS=1 for the blocks that train, one thread), and a
result shown in a comment under or beside an expression (`expr  # True`,
or a comment line holding a Python literal right below it) is checked.
A block that is not meant to run is marked ```python no-run (keep it rare).

Shell blocks are not run; every `keras-egf-*` command they (and the prose's
inline code) name must be a console script, and every flag given to it
one of its flags (as its --helpfull lists them). Inline `--flag` spans
must be a flag of some binary or benchmark.
"""

import ast
import glob
import io
import os
import re
import subprocess
import sys
import tokenize
from concurrent.futures import ThreadPoolExecutor

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC_FILES = ["README.md"] + sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "**", "*.md"),
                                                recursive=True))
_FENCE = re.compile(r"^(\s*)```(\S*)(.*)$")
SHELL = ("bash", "sh", "shell", "console")
NO_RUN = "no-run"


def fenced_blocks(text):
    """[(language, info after it, line of the opening fence (1-based), code)] of the
    fenced blocks of a markdown text (indented fences, as in lists, too)."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang, info = m.group(1), m.group(2).lower(), m.group(3).strip()
        body, j = [], i + 1
        while j < len(lines) and lines[j].strip() != "```":
            line = lines[j]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            j += 1
        if j == len(lines):
            raise ValueError(f"unclosed ``` fence at line {i + 1}")
        blocks.append((lang, info, i + 1, "\n".join(body) + "\n"))
        i = j + 1
    return blocks


def _read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def python_blocks():
    """pytest params of every runnable python block, id FILE:LINE."""
    params = []
    for path in DOC_FILES:
        for lang, info, line, code in fenced_blocks(_read(path)):
            if lang in ("python", "py") and NO_RUN not in info.split():
                params.append(pytest.param(path, line, code, id=f"{path}:{line}"))
    return params


PYTHON_BLOCKS = python_blocks()


def _comments(code):
    """{line: comment text} of a block's comments (1-based lines)."""
    out = {}
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type == tokenize.COMMENT:
            out[tok.start[0]] = tok.string[1:].strip()
    return out


def with_shown_results_checked(code):
    """`code` in which every top-level expression statement whose result the
    docs show as a literal comment (on its last line, or alone on the next
    line) is wrapped in `_shown(expr, literal)`, which fails on a different
    value. Line numbers are kept."""
    tree, comments = ast.parse(code), _comments(code)
    lines = code.splitlines()
    for stmt in reversed(tree.body):
        if not isinstance(stmt, ast.Expr):
            continue
        shown = None
        for line in (stmt.end_lineno, stmt.end_lineno + 1):
            text = comments.get(line)
            if text is None or (line > stmt.end_lineno
                                and not lines[line - 1].lstrip().startswith("#")):
                continue
            try:
                shown = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                continue
            break
        else:
            continue
        first, last = stmt.lineno - 1, stmt.end_lineno - 1
        segment = ast.get_source_segment(code, stmt.value).splitlines()
        prefix = lines[first][:stmt.col_offset]
        new = (prefix + "_shown(" + "\n".join(segment) + f", {shown!r})").splitlines()
        lines[first:last + 1] = new
    return "\n".join(lines) + "\n"


# Defined in the namespace the checked blocks run in.
SHOWN = ("def _shown(value, expected):\n"
         "    assert value == expected, "
         "f'the docs show {expected!r}, the code gives {value!r}'\n")


def _namespace():
    namespace = {"__name__": "__main__"}
    exec(SHOWN, namespace)
    return namespace


def test_the_blocks_are_found():
    ids = [p.id for p in PYTHON_BLOCKS]
    for path in ("README.md", "docs/migrating_from_tfmot.md",
                 "docs/tutorial_pruning_in_keras.md"):
        assert any(i.startswith(path + ":") for i in ids), (path, ids)
    blocks = fenced_blocks("text\n```python\na = 1\n```\n  ```bash\n  ls -l\n  ```\n")
    assert blocks == [("python", "", 2, "a = 1\n"), ("bash", "", 5, "ls -l\n")]


def test_shown_results_become_checks():
    code = ("x = 2\n"
            "x + 1   # 3\n"
            "[x,\n x]\n"
            "# [2, 2]\n"
            "x   # not a literal\n"
            "y = x  # 5\n")
    checked = with_shown_results_checked(code)
    assert checked.count("\n") == code.count("\n")  # line numbers kept
    assert "_shown(x + 1, 3)" in checked and "_shown([x,\n x], [2, 2])" in checked
    assert checked.splitlines()[5:] == ["x   # not a literal", "y = x  # 5"]
    exec(compile(checked, "<doc>", "exec"), _namespace())
    with pytest.raises(AssertionError, match="show 4, the code gives 3"):
        exec(compile(with_shown_results_checked("x = 2\nx + 1  # 4\n"), "<doc>", "exec"),
             _namespace())


def _env(backend="tensorflow"):
    env = dict(os.environ, KERAS_EGF_DOCS_EPOCHS="1", KERAS_BACKEND=backend,
               TF_CPP_MIN_LOG_LEVEL="3", MPLBACKEND="Agg", TF_NUM_INTRAOP_THREADS="1",
               TF_NUM_INTEROP_THREADS="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    return env


@pytest.mark.parametrize("path, line, code", PYTHON_BLOCKS)
def test_python_block_runs(path, line, code, tmp_path):
    _run_block(path, line, code, tmp_path, "tensorflow")


@pytest.mark.parametrize("path, line, code", [
    p for p in PYTHON_BLOCKS if p.values[0] == "README.md"])
def test_readme_python_block_runs_on_jax(path, line, code, tmp_path):
    """The README's Python examples (pruning, `fit` with gf/EGF, the
    TFMOT-style workflow, strip, save/load) as a JAX user runs them after
    `pip install keras-egf[jax]`: with every TensorFlow import failing."""
    pytest.importorskip("jax")
    from test_without_tensorflow import BLOCK

    _run_block(path, line, code, tmp_path, "jax", prelude=BLOCK)


def _run_block(path, line, code, tmp_path, backend, prelude=""):
    # Padded so that a traceback's line numbers are the markdown file's.
    source = tmp_path / "block.txt"
    source.write_text("\n" * line + with_shown_results_checked(code))
    script = tmp_path / "block.py"
    script.write_text(prelude + f"namespace = {{'__name__': '__main__'}}\n"
                      f"exec({SHOWN!r}, namespace)\n"
                      f"code = open({str(source)!r}).read()\n"
                      f"exec(compile(code, {path!r}, 'exec'), namespace)\n")
    work = tmp_path / "cwd"
    work.mkdir()
    proc = subprocess.run([sys.executable, str(script)], cwd=work, env=_env(backend),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{path}:{line} failed on {backend}:\n{proc.stderr[-4000:]}"


# ---- shell blocks and inline code: commands and flags exist ----

def console_scripts():
    """{'keras-egf-NAME': module} of setup.cfg's console_scripts."""
    text = _read("setup.cfg")
    return dict(re.findall(r"^\s*(keras-egf-[\w-]+)\s*=\s*([\w.]+):", text, re.M))


_HELP_FLAG = re.compile(r"^\s+(?:-\S+,)?--(\[no\])?([\w-]+)[:\s]", re.M)


def _flags_of(module):
    proc = subprocess.run([sys.executable, "-m", module, "--helpfull"], cwd=ROOT,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    flags = set()
    for boolean, name in _HELP_FLAG.findall(proc.stdout):
        flags.add(name)
        if boolean:
            flags.add("no" + name)
    assert flags, proc.stdout
    return flags


@pytest.fixture(scope="module")
def binary_flags():
    """{'keras-egf-NAME': its flags} from each binary's --helpfull."""
    scripts = console_scripts()
    with ThreadPoolExecutor(2) as pool:
        flags = dict(zip(scripts, pool.map(_flags_of, scripts.values())))
    return flags


def benchmark_flags():
    """{'benchmarks.NAME': its argparse flags} (`python -m benchmarks` is
    benchmarks.run)."""
    out = {}
    for path in glob.glob(os.path.join(ROOT, "benchmarks", "*.py")):
        name = "benchmarks." + os.path.basename(path)[:-3]
        with open(path, encoding="utf-8") as f:
            out[name] = set(re.findall(r"add_argument\(\s*\"--([\w-]+)\"", f.read()))
    out["benchmarks"] = out.get("benchmarks.run", set())
    return out


def _shell_commands(text):
    """Command lines of a markdown text's shell blocks and inline code
    spans, continuation lines joined, each split at ;, &&, || and |."""
    lines, prose = [], text
    for lang, _, _, code in fenced_blocks(text):
        if lang in SHELL:
            lines += code.replace("\\\n", " ").splitlines()
    prose = re.sub(r"^\s*```.*?^\s*```", "", text, flags=re.S | re.M)
    spans = [s.replace("\n", " ") for s in re.findall(r"`([^`]+)`", prose)]
    commands = []
    for line in lines + spans:
        commands += [c.strip() for c in re.split(r"&&|\|\||;|\|| &(?:\s|$)", line)]
    return commands, spans


def _flag_names(words):
    return [re.match(r"--([\w-]+)", w).group(1) for w in words
            if re.match(r"--[\w-]+", w)]


def doc_flag_problems(text, binaries, benchmarks):
    """What a doc's shell commands and inline code name that does not exist."""
    problems = []
    commands, spans = _shell_commands(text)
    for command in commands:
        words = command.split()
        for i, word in enumerate(words):
            if word.startswith("keras-egf-"):
                if word not in binaries:
                    problems.append(f"{word}: no such command")
                    break
                for flag in _flag_names(words[i + 1:]):
                    if flag not in binaries[word]:
                        problems.append(f"{word} --{flag}: no such flag ({command!r})")
                break
            if word == "-m" and i + 1 < len(words) and words[i + 1].startswith("benchmarks"):
                module = words[i + 1]
                if module not in benchmarks:
                    problems.append(f"python -m {module}: no such benchmark")
                    break
                for flag in _flag_names(words[i + 2:]):
                    if flag not in benchmarks[module] | {"help"}:
                        problems.append(f"python -m {module} --{flag}: no such flag")
                break
    every = set().union(*binaries.values(), *benchmarks.values())
    for span in spans:  # a lone `--flag` or `--flag=value`
        if re.fullmatch(r"--[\w-]+(=\S*)?", span.strip()):
            flag = _flag_names([span.strip()])[0]
            if flag not in every:
                problems.append(f"`{span}`: not a flag of any binary or benchmark")
    return problems


def test_flag_check_finds_unknown_commands_and_flags(binary_flags):
    text = ("Run `keras-egf-train --epochs=2 --no_such_flag`, `--pack=16`, "
            "`--no_such_either`, `python -m benchmarks.packing --pack 4 --nope`.\n\n"
            "```bash\nkeras-egf-sweep --grid=g.json \\\n  --bogus=1 && keras-egf-nope --x\n```\n")
    problems = doc_flag_problems(text, binary_flags, benchmark_flags())
    assert problems == [
        "keras-egf-sweep --bogus: no such flag ('keras-egf-sweep --grid=g.json    --bogus=1')",
        "keras-egf-nope: no such command",
        "keras-egf-train --no_such_flag: no such flag "
        "('keras-egf-train --epochs=2 --no_such_flag')",
        "python -m benchmarks.packing --nope: no such flag",
        "`--no_such_either`: not a flag of any binary or benchmark"], problems


@pytest.mark.parametrize("path", DOC_FILES)
def test_commands_and_flags_in_the_docs_exist(path, binary_flags):
    problems = doc_flag_problems(_read(path), binary_flags, benchmark_flags())
    assert not problems, f"{path}:\n" + "\n".join(problems)


def test_install_advice_works_from_a_checkout(monkeypatch):
    """keras-egf is installed from its checkout (`pip install -e .`), not
    from a package index: the docs and from_tfmot's error give the extra as
    `pip install -e '.[tfmot]'`."""
    import importlib.util

    from keras_egf import interop

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name
                        == "tensorflow_model_optimization" else find_spec(name, *args))
    with pytest.raises(ImportError, match=re.escape("pip install -e '.[tfmot]'")):
        interop.from_tfmot("pruned.h5")
    assert re.search(r"^tfmot\s*=", _read("setup.cfg"), re.M)
    for path in DOC_FILES + ["keras_egf/interop.py"]:
        assert "keras-egf[" not in _read(path), path
    assert "pip install -e '.[tfmot]'" in _read("docs/migrating_from_tfmot.md")
