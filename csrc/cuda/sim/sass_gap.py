"""SASS instructions between each grid barrier of the persistent kernels and the
first staging-buffer load (LDG.E.128.STRONG.GPU: the ld.global.cg of h or
dgates that the step waits on), read from `cuobjdump -sass` of a cubin.

  python csrc/cuda/sim/sass_gap.py kernels.cubin [CUOBJDUMP]

The path is walked from the BAR.SYNC that closes the grid barrier (after its
ATOM.E.ADD ... CCTL.IVALL spin): forward conditional branches not taken (the
pair guards hold for full tiles), backward branches taken once (the step loop's
back-edge), unconditional branches followed. Prints, per kernel, the
instructions walked from each grid barrier to the first staging load (in
code order: the forward's barrier before the step loop, then the one in it)."""
import re
import subprocess
import sys

INSN = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")


def functions(sass):
    name, body = None, []
    for line in sass.splitlines():
        m = re.match(r"\s+Function : (\S+)", line)
        if m:
            if name:
                yield name, body
            name, body = m.group(1), []
            continue
        m = INSN.search(line)
        if m and name:
            body.append((int(m.group(1), 16), m.group(2)))
    if name:
        yield name, body


def walk(body, start):
    """Instructions from body[start] to the first staging load (None: none)."""
    at = {pc: i for i, (pc, _) in enumerate(body)}
    i, n, taken = start, 0, set()
    while i < len(body) and n < 20000:
        pc, text = body[i]
        if "LDG.E.128.STRONG.GPU" in text:
            return n
        n += 1
        m = re.match(r"(@!?U?P\w+\s+)?BRA\s+(?:\S+\s+)?0x([0-9a-f]+)", text)
        if m:
            target = int(m.group(2), 16)
            if m.group(1) is None or (target < pc and pc not in taken):
                taken.add(pc)
                i = at[target]
                continue
        if text.startswith("EXIT") or text.startswith("RET"):
            return None
        i += 1
    return None


def main(argv):
    cubin = argv[1]
    tool = argv[2] if len(argv) > 2 else "cuobjdump"
    sass = subprocess.run([tool, "-sass", cubin], capture_output=True, text=True, check=True).stdout
    for name, body in functions(sass):
        m = re.search(r"persistent_(forward|backward)_kernelILi(\d)ELi(\d)E", name)
        if not m:
            continue
        gaps = []
        armed = False
        for i, (_, text) in enumerate(body):
            if "ATOM.E.ADD.STRONG.GPU" in text or "RED.E.ADD.STRONG.GPU" in text:
                armed = True
            elif armed and text.startswith("BAR.SYNC"):
                armed = False
                gaps.append(walk(body, i + 1))
        desc = ", ".join(str(n) for n in gaps)
        print(f"{m.group(1):8} mode {m.group(2)} NTCM {m.group(3)}: {desc}")


if __name__ == "__main__":
    main(sys.argv)
