"""docs/configuration.md cannot drift from the config loader: every key a loader accepts (the
key lists passed to cfg_check_keys() anywhere under userspace/) is documented, and every
key the reference documents is accepted by a loader. Keys are compared by name, and by full
path where the loader names the section with a literal ("admin", "limits", ...)."""
import re

from conftest import REPO

DOC = REPO / "docs" / "configuration.md"
ARRAY_RE = re.compile(r"static\s+const\s+char\s*\*\s*const\s+(\w+)\s*\[\s*\]\s*=\s*\{(.*?)\}\s*;",
                      re.S)
CHECK_RE = re.compile(r"cfg_check_keys\s*\(\s*[^,]+,\s*([^,]+?)\s*,\s*([^,]+?)\s*,\s*errs\s*\)")
DOC_ROW_RE = re.compile(r"^\|\s*`([^`]+)`\s*\|", re.M)


def loader_keys():
    """{key name: [(file:line, section path literal or None)]} over the whole loader."""
    keys = {}
    for src in sorted((REPO / "userspace").rglob("*.c")):
        if "admin" in src.relative_to(REPO).parts:  # the admin API's own request bodies are not config
            continue
        text = src.read_text()
        for call in CHECK_RE.finditer(text):
            path_arg, list_arg = call.group(1), call.group(2)
            section = path_arg.strip('"') if path_arg.startswith('"') else None
            names = re.findall(r"\b\w+\b", list_arg)
            line = text.count("\n", 0, call.start()) + 1
            for name in names:
                # The nearest definition of that array before the call (local arrays of
                # several functions may share a name).
                defs = [m for m in ARRAY_RE.finditer(text, 0, call.start()) if m.group(1) == name]
                if not defs:
                    continue
                for key in re.findall(r'"([^"]*)"', defs[-1].group(2)):
                    where = "%s:%d" % (src.relative_to(REPO), line)
                    keys.setdefault(key, []).append((where, section))
    return keys


READ_RE = re.compile(r'(?:json_object_get|cfg_get_\w+)\(\s*\w+\s*,\s*"([a-z_]+)"')


def loader_reads():
    """Key names the loader reads (json_object_get / cfg_get_*), e.g. "any_of"."""
    names = set()
    for src in (REPO / "userspace").rglob("*.c"):
        if "admin" not in src.relative_to(REPO).parts:
            names.update(READ_RE.findall(src.read_text()))
    return names


def doc_paths():
    """Every documented key path: the first cell of a table row, in backquotes."""
    text = DOC.read_text()
    return {p for p in DOC_ROW_RE.findall(text) if not p.startswith("-")}


def last(path):
    return re.split(r"[.\[\]]+", path.rstrip("[]"))[-1]


def test_loader_found_keys():
    keys = loader_keys()
    for k in ("workers", "listeners", "max_body_bytes", "per_s", "origins", "token"):
        assert k in keys, "the key extractor lost %r; fix tests/e2e/test_config_doc.py" % k


def test_every_loader_key_is_documented():
    documented = doc_paths()
    names = {last(p) for p in documented}
    missing = []
    for key, uses in sorted(loader_keys().items()):
        for where, section in uses:
            if section is not None:
                full = key if section == "" else section + "." + key
                if full not in documented:
                    missing.append("%s (accepted at %s) has no row `%s` in docs/configuration.md"
                                   % (full, where, full))
            elif key not in names:
                missing.append("key \"%s\" (accepted at %s) has no row in docs/configuration.md "
                               "(add a row whose first cell is its full path, e.g. `x.y.%s`)"
                               % (key, where, key))
    assert not missing, "\n".join(missing)


def test_every_documented_key_is_accepted():
    keys = set(loader_keys()) | loader_reads()
    extra = ["`%s` is documented in docs/configuration.md but no cfg_check_keys() list under "
             "userspace/ accepts \"%s\"" % (p, last(p)) for p in sorted(doc_paths())
             if last(p) not in keys]
    assert not extra, "\n".join(extra)


def test_documented_example_loads(tmp_path):
    """The reference's example is a config the loader accepts, and the error lines it shows
    are the ones the loader prints for the variant it describes."""
    from conftest import run_check
    text = DOC.read_text()
    example = re.search(r"## Example\n.*?```json\n(.*?)```", text, re.S).group(1)
    errors = re.search(r"## Example\n.*?```json\n.*?```.*?```\n(.*?)```", text, re.S).group(1)
    env = {"MOBILE_APP_KEY": "k-0123456789abcdef"}
    (tmp_path / "good").mkdir()
    (tmp_path / "bad").mkdir()
    code, out = run_check(example, tmp_path / "good", env=env)
    assert code == 0 and "configuration OK" in out, out
    bad = (example.replace('"upstream": "orders", "path"', '"upstream": "order", "path"')
           .replace('"burst": 200', '"burst": 200, "scope": "cluster"'))
    code, out = run_check(bad, tmp_path / "bad", env=env)
    assert code == 1, out
    shown = errors.strip().split("\n")
    printed = [line for line in out.strip().split("\n") if line]
    assert sorted(printed) == sorted(shown), (printed, shown)
