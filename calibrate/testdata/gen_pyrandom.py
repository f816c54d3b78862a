# Regenerates pyrandom.json with CPython's own random module (reference for
# PyRandom). Run: python3 gen_pyrandom.py > pyrandom.json
import json, random, sys

out = {"python": sys.version.split()[0], "getrandbits": [], "randint": [], "shuffle": []}
for seed in (0, 1, 42, 2**32 + 7, -5, 12345678901):
    r = random.Random(seed)
    ks = [32, 32, 1, 7, 31, 33, 40, 63, 64, 0, 17]
    out["getrandbits"].append({"seed": seed, "k": ks, "want": [str(r.getrandbits(k)) for k in ks]})
for seed, a, b in ((0, 0, 10), (0, 0, 230000 - 1024 - 1), (3, -100, 100), (7, 5, 5), (42, 0, 2**40), (1, 0, 2**62 + 12345)):
    r = random.Random(seed)
    out["randint"].append({"seed": seed, "a": a, "b": b, "want": [r.randint(a, b) for _ in range(20)]})
for seed, n in ((0, 10), (5, 1), (9, 100)):
    x = list(range(n))
    random.Random(seed).shuffle(x)
    out["shuffle"].append({"seed": seed, "n": n, "want": x})
json.dump(out, sys.stdout, indent=1)
print()
