"""Regenerates python_reference.txt: Python's repr and the contract's round9
for random doubles, so the Go tests can check FormatFloat and Round9 against
the reference agent's own arithmetic without needing Python at test time.

Each line: <float.hex()> <repr(x)> <repr(round9(x))>
Run: python3 testdata/gen_python_reference.py > testdata/python_reference.txt
"""
import random
import struct
from decimal import Decimal, ROUND_HALF_UP, InvalidOperation

def round9(x):
    try:
        return float(Decimal(repr(x)).quantize(Decimal("1e-9"), rounding=ROUND_HALF_UP))
    except InvalidOperation:  # too many digits for the context: nothing to round
        return x

rng = random.Random(20250119)
values = []
for _ in range(1500):  # arbitrary bit patterns (finite only)
    while True:
        x = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if x == x and abs(x) != float("inf"):
            break
    values.append(x)
for _ in range(1500):  # values in the range agents send, with many decimals
    values.append(rng.uniform(-5, 5) * 10 ** rng.randint(-12, 17))
for _ in range(1000):  # exact ties at the 10th decimal, the half-up cases
    values.append(float("%d.%09d5" % (rng.randint(0, 99), rng.randint(0, 10**9 - 1))))
for x in values:
    print(x.hex(), repr(x), repr(round9(x)))
