"""How the extension is linked: packed relocations, and the code a process runs placed together
(build.rs, bench/profile/link-order.txt), so that each process keeps little of the extension's
code resident."""
import os
import re
import subprocess

import pytest

from conftest import ROOT, fast_ini

ORDER = ROOT / "bench" / "profile" / "link-order.txt"
MADE_WITH = ROOT / "bench" / "profile" / "link-order.rustc"


def ordered(so):
    """Skips unless build.rs applied the function order (see build.rs for when it does not)."""
    if os.environ.get("WOOSYNC_LINK_ORDER") == "0":
        pytest.skip("WOOSYNC_LINK_ORDER=0")
    comment = subprocess.run(["readelf", "-p", ".comment", str(so)], capture_output=True, text=True).stdout
    if "Linker: LLD" not in comment:
        pytest.skip("not linked by lld: build.rs links without the function order")
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    if rustc != MADE_WITH.read_text().strip():
        pytest.skip(f"{ORDER.name} was made with {MADE_WITH.read_text().strip()}, this is {rustc}: "
                    f"regenerate it (bench/profile/link_order.py)")


def sections(so):
    out = subprocess.run(["readelf", "-SW", str(so)], capture_output=True, text=True, check=True).stdout
    found = {}
    for m in re.finditer(r"\]\s+(\.\S+)\s+\S+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", out):
        found[m.group(1)] = (int(m.group(2), 16), int(m.group(3), 16))
    return found


def functions(so):
    """(address, name) of every function symbol, by address."""
    out = subprocess.run(["nm", "-n", str(so)], capture_output=True, text=True, check=True).stdout
    return [(int(p[0], 16), p[2]) for p in (l.split() for l in out.splitlines()) if len(p) == 3 and p[1] in "tTwW"]


def test_relative_relocations_are_packed(so):
    glibc = subprocess.run(["getconf", "GNU_LIBC_VERSION"], capture_output=True, text=True).stdout.split()
    if os.environ.get("WOOSYNC_RELR") == "0" or tuple(map(int, glibc[1].split(".")[:2])) < (2, 36):
        pytest.skip("built without packed relocations (glibc < 2.36 or WOOSYNC_RELR=0)")
    s = sections(so)
    assert ".relr.dyn" in s, "no DT_RELR section: -z pack-relative-relocs was not applied"
    assert s[".rela.dyn"][1] < 64 * 1024, f".rela.dyn is {s['.rela.dyn'][1]} bytes"


def test_the_profiled_functions_sit_together_at_the_start_of_the_code(so):
    ordered(so)
    listed = [l.strip() for l in ORDER.read_text().splitlines() if l.strip()]
    syms = functions(so)
    names = {n for _, n in syms}
    present = [n for n in listed if n in names]
    assert len(present) >= 0.9 * len(listed), (
        f"only {len(present)} of the {len(listed)} functions of {ORDER.name} are in the build: regenerate "
        f"it (bench/profile/link_order.py)")
    text_start, text_size = sections(so)[".text"]
    wanted = set(present)
    addrs = [a for a, n in syms if n in wanted]
    lo, hi = min(addrs), max(addrs)
    assert lo - text_start < 4096, f"the listed functions start {lo - text_start} bytes into .text"
    at = set(addrs)     # another name for a listed function (an alias) is not another function
    others = [n for a, n in syms if lo <= a <= hi and n not in wanted and a not in at]
    assert len(others) <= 0.02 * len(present), f"{len(others)} unlisted functions among them: {others[:5]}"
    assert hi - lo < text_size / 2


def test_a_busy_process_keeps_little_of_the_code_resident(php, receiver, so):
    """Dispatching and delivering 2,000 events touches code from the whole extension; placed
    together it is about 1.5 MB, where the same build linked in the default order made 4.5-5 MB
    of the 5.8 MB of code resident (the kernel maps the cached pages of the 64 KB around each page fault;
    4 KB pages on x86-64). With a cold page cache fewer pages are mapped, which only makes the bound
    easier; the previous build failed it on a warm one (3.6 MB)."""
    ordered(so)
    r = php.json(r"""
        function resident_text_kb() {
            foreach (file('/proc/self/maps') as $l) {
                $p = preg_split('/\s+/', trim($l));
                if ($p[1] === 'r-xp' && ($p[5] ?? '') === SO) [$s, $e] = array_map('hexdec', explode('-', $p[0]));
            }
            $f = fopen('/proc/self/pagemap', 'rb'); $n = 0;
            for ($a = $s; $a < $e; $a += 4096) {
                fseek($f, ($a >> 12) * 8);
                if (unpack('P', fread($f, 8))[1] & (1 << 63)) $n++;
            }
            return ['resident' => $n * 4, 'mapped' => ($e - $s) >> 10];
        }
        $p = ['id' => 1, 'name' => 'Hoodie', 'pad' => str_repeat('x', 600)];
        for ($i = 0; $i < 2000; $i++) woosync_dispatch('product.updated', $p, ['key' => 'product:' . ($i % 200)]);
        $flushed = woosync_flush(30);
        out(['flushed' => $flushed, 'status' => woosync_status()['delivered'], 'text' => resident_text_kb()]);
    """.replace("SO", repr(str(so))), fast_ini(receiver.url))
    assert r["flushed"] is True and r["status"] == 2000
    text = r["text"]
    assert text["mapped"] > 5000, text
    assert text["resident"] <= 2560, f"{text['resident']} KB of the extension's {text['mapped']} KB of code resident"
