"""A process that runs devices keeps large short-lived buffers (a TLS read's 256 KiB) on the
heap instead of a fresh mapping, and the system calls, per allocation."""
import subprocess
import sys

CHECK = """
import sys
from stressgrid.runtime.allocator import keep_large_buffers_on_heap

def mappings():
    with open("/proc/self/maps") as maps:
        return sum(1 for _ in maps)

if sys.argv[1] == "tuned":
    assert keep_large_buffers_on_heap()
before = mappings()
buffer = bytearray(256 * 1024)
print(mappings() - before)
"""


def new_mappings(mode):
    out = subprocess.run([sys.executable, "-c", CHECK, mode], capture_output=True, text=True, check=True,
                         timeout=30)
    return int(out.stdout)


def test_a_256_kib_buffer_takes_a_mapping_of_its_own_unless_the_allocator_is_tuned():
    assert new_mappings("default") == 1   # glibc's default: mmap over 128 KiB
    assert new_mappings("tuned") == 0
