"""Work of a case and the fastest time the machine could do it in.

Floor = max(flops / GEMM rate, bytes / bandwidth, steps x weight stream)
+ steps x barrier. The bytes count only traffic no implementation can avoid
(inputs, outputs, weights once; in backward also the incoming grad and the grads
produced), so the floor is a bound, not a prediction. Every dependent step reads
all of the recurrent weights again (registers hold a few KiB of them): the
weight stream is the measured time for the machine's threads to read those bytes
from wherever they sit and meet at a barrier, which bounds the steps of a small
batch, where a step does only 2B flops per weight read. The barrier is the
device-wide sync a recurrence needs between dependent steps (about 1 us on a
GPU; on the CPU it is inside the weight stream)."""

BACKWARD_FLOPS_FACTOR = 2  # backward = grad wrt inputs + grad wrt weights, each ~ forward


def _layers(case):
    """(input width, out width) of each layer; each runs once per direction."""
    if case.mode == "cell":
        return [(case.I, case.H)]
    return [(case.I if layer == 0 else case.out_size * case.dirs, case.out_size)
            for layer in range(case.layers)]


def _weights(case, in_size, out):
    w = 4 * case.H * (in_size + out) + 8 * case.H
    if case.proj:
        w += case.proj * case.H
    return w


def flops(case):
    """Matmul flops (pointwise work is negligible next to them): one layer forward is
    2*T*B*4H*(I+H) (+ 2*T*B*P*H with a projection)."""
    dirs = 1 if case.mode == "cell" else case.dirs
    total = 0
    for in_size, out in _layers(case):
        per_step = 2 * case.B * 4 * case.H * (in_size + out)
        if case.proj and case.mode != "cell":
            per_step += 2 * case.B * case.proj * case.H
        total += dirs * case.steps * per_step
    if case.mode == "fwdbwd":
        total *= 1 + BACKWARD_FLOPS_FACTOR
    return total


def min_bytes(case, element_size):
    dirs = 1 if case.mode == "cell" else case.dirs
    n = 0
    for in_size, out in _layers(case):
        acts = case.steps * case.B * (in_size + dirs * out)   # read input, write output
        weights = dirs * _weights(case, in_size, out)
        states = dirs * case.B * 2 * (out + case.H)            # h0, c0 in; h_n, c_n out
        n += acts + weights + states
        if case.mode == "fwdbwd":
            # read the output grad, input and output again; write input grad and weight grads
            n += case.steps * case.B * (2 * in_size + 2 * dirs * out) + 2 * weights + states
    return n * element_size


def recurrent_bytes(case, element_size):
    """Bytes of recurrent weights one dependent step reads: W_hh (and W_hr) of every
    direction, which run side by side. A cell call has no step to repeat: 0."""
    if case.mode == "cell":
        return 0
    per_dir = 4 * case.H * case.out_size + (case.proj * case.H if case.proj else 0)
    return case.dirs * per_dir * element_size


def barrier_steps(case):
    """Dependent steps in sequence: directions run side by side, layers and the
    backward sweep do not."""
    steps = case.steps * (1 if case.mode == "cell" else case.layers)
    return 2 * steps if case.mode == "fwdbwd" else steps


def floor_seconds(case, machine):
    f = flops(case) / machine.gemm_flops[(case.device, case.dtype)]
    size = machine.element_size[case.dtype]
    b = min_bytes(case, size) / machine.bandwidth[case.device]
    s = barrier_steps(case) * machine.stream_s.get((case.device, recurrent_bytes(case, size)), 0.0)
    return max(f, b, s) + barrier_steps(case) * machine.barrier_s[case.device]
