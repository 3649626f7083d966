"""stubs/woosync.stub.php must describe exactly what the built extension exports."""
import json
import subprocess

from conftest import FUNCTIONS, PHP, ROOT

STUB = ROOT / "stubs" / "woosync.stub.php"

REFLECT = r"""
function norm_type($t) {
    if ($t === null) return null;
    $s = (string)$t;
    $nullable = false;
    if ($s[0] === '?') { $nullable = true; $s = substr($s, 1); }
    $parts = explode('|', $s);
    if ($nullable) $parts[] = 'null';
    $parts = array_map('strtolower', array_map(fn($p) => ltrim($p, '\\'), $parts));
    sort($parts);
    return implode('|', array_unique($parts));
}
function describe_fn(ReflectionFunction $f) {
    $params = [];
    foreach ($f->getParameters() as $p) {
        $d = ['name' => $p->getName(), 'type' => norm_type($p->getType()),
              'optional' => $p->isOptional(), 'variadic' => $p->isVariadic(), 'by_ref' => $p->isPassedByReference(),
              'has_default' => $p->isDefaultValueAvailable(), 'default' => null];
        if ($p->isDefaultValueAvailable()) {
            try { $v = $p->getDefaultValue(); $d['default'] = (is_int($v) || is_float($v)) && is_finite((float)$v) ? ['num' => (float)$v] : ['php' => var_export($v, true)]; }
            catch (Throwable $e) { $d['default'] = ['error' => $e->getMessage()]; }
        }
        $params[] = $d;
    }
    return ['name' => $f->getName(), 'params' => $params, 'return' => norm_type($f->getReturnType()),
            'required' => $f->getNumberOfRequiredParameters()];
}
function describe_class($name) {
    if (!class_exists($name, false)) return null;
    $c = new ReflectionClass($name);
    return ['name' => $c->getName(), 'parent' => $c->getParentClass() ? $c->getParentClass()->getName() : null,
            'final' => $c->isFinal(), 'abstract' => $c->isAbstract()];
}
"""

FROM_EXT = REFLECT + r"""
$ext = new ReflectionExtension('woosync');
$fns = [];
foreach ($ext->getFunctions() as $f) $fns[$f->getName()] = describe_fn($f);
ksort($fns);
echo json_encode(['functions' => $fns, 'classes' => array_values($ext->getClassNames()),
                  'exception' => describe_class('WooSyncException')]), "\n";
"""

FROM_STUB = REFLECT + r"""
if (extension_loaded('woosync')) { fwrite(STDERR, "woosync must not be loaded here\n"); exit(3); }
$before = get_defined_functions()['user'];
require $argv[1];
$fns = [];
foreach (array_diff(get_defined_functions()['user'], $before) as $name) {
    $f = new ReflectionFunction($name);
    $fns[$f->getName()] = describe_fn($f);
}
ksort($fns);
$classes = array_values(array_filter(get_declared_classes(), fn($c) => (new ReflectionClass($c))->isUserDefined()));
echo json_encode(['functions' => $fns, 'classes' => $classes, 'exception' => describe_class('WooSyncException')]), "\n";
"""


def _run_php(php_opts, tmp_path, code, script_args=()):
    script = tmp_path / "reflect.php"
    script.write_text("<?php\n" + code)
    p = subprocess.run([PHP, "-d", "display_errors=stderr", *php_opts, str(script), *script_args],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"php failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    return json.loads(p.stdout.strip().splitlines()[-1])


def from_extension(so, tmp_path):
    return _run_php([f"-dextension={so}"], tmp_path, FROM_EXT)


def from_stub(tmp_path):
    assert STUB.is_file(), f"stub file {STUB} is missing"
    return _run_php([], tmp_path, FROM_STUB, [str(STUB)])


def test_stub_file_exists_and_parses_without_the_extension(tmp_path):
    assert STUB.is_file(), f"stub file {STUB} is missing"
    p = subprocess.run([PHP, "-l", str(STUB)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
    stub = from_stub(tmp_path)
    missing = set(FUNCTIONS) - set(stub["functions"])
    assert not missing, f"stub lacks {missing}"


def test_stub_matches_extension_reflection(so, so_functions, tmp_path):
    ext = from_extension(so, tmp_path)
    stub = from_stub(tmp_path)
    assert sorted(ext["functions"]) == sorted(stub["functions"]), (
        f"function names differ: extension {sorted(ext['functions'])} vs stub {sorted(stub['functions'])}")
    problems = []
    for name, e in ext["functions"].items():
        s = stub["functions"][name]
        if e != s:
            problems.append(f"{name}:\n   extension: {json.dumps(e)}\n   stub:      {json.dumps(s)}")
    assert not problems, "stub and extension differ:\n" + "\n".join(problems)
    assert "WooSyncException" in ext["classes"], ext["classes"]
    assert "WooSyncException" in stub["classes"], stub["classes"]
    assert ext["exception"]["parent"] == "Exception", ext["exception"]
    assert stub["exception"]["parent"] == "Exception", stub["exception"]
    assert ext["exception"] == stub["exception"]


def test_re_output_lists_exactly_the_stub_functions(so, tmp_path):
    p = subprocess.run([PHP, f"-dextension={so}", "--re", "woosync"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    import re
    listed = sorted(set(re.findall(r"Function \[ <internal:woosync> function (\w+) \]", p.stdout)))
    stub = from_stub(tmp_path)
    assert listed == sorted(stub["functions"]), p.stdout
    assert re.search(r"Class \[ <internal:woosync> class WooSyncException extends Exception", p.stdout), p.stdout


# The contract's signatures.
N = lambda v: {"num": float(v)}  # noqa: E731
CONTRACT = {
    "woosync_dispatch": ([("topic", "string", None), ("payload", "array", None),
                          ("options", "array|null", {"php": "NULL"})], "string"),
    "woosync_flush": ([("timeout_seconds", "float", N(5.0))], "bool"),
    "woosync_status": ([], "array"),
    "woosync_verify": ([("body", "string", None), ("headers", "array", None), ("secret", "string", None),
                        ("tolerance_seconds", "int", N(300))], "bool"),
    "woosync_retry": ([("event_id", "string", None)], "bool"),
    "woosync_events": ([("filter", "array|null", {"php": "NULL"})], "array"),
    "woosync_event": ([("id", "string", None)], "array|null"),
}


def test_extension_signatures_match_contract(so, so_functions, tmp_path):
    ext = from_extension(so, tmp_path)
    problems = []
    for name, (params, ret) in CONTRACT.items():
        f = ext["functions"].get(name)
        if f is None:
            problems.append(f"{name}: missing")
            continue
        got = [(p["name"], p["type"], p["default"] if p["optional"] else None) for p in f["params"]]
        want = params
        if got != want:
            problems.append(f"{name} params: got {got}, want {want}")
        if f["return"] != ret:
            problems.append(f"{name} return: got {f['return']}, want {ret}")
    assert not problems, "\n".join(problems)
