#pragma once
// The per-step pointwise interface every backend provides (framework-free:
// raw pointers, row-major, contiguous rows). n rows of H hidden units.
//
// Each is a template on the cell (cell_variants.h: K = Cell::kGates gate
// blocks of H, R = Cell::kPeepRows peephole rows) and the element type.
//
// forward<Cell, scalar_t>(n, H, gates, b_ih, b_hh, c_prev, c_out, h_out, h_copy, c_copy, peep)
//   gates   (n, KH)  in: pre-activations (Cell's order); out: activated gates
//   b_ih    (KH)     added to the pre-activations; may be null
//   b_hh    (KH)     added to the pre-activations; may be null
//   c_prev  (n, H)   c_{t-1}; may alias c_out
//   c_out   (n, H)   c_t
//   h_out   (n, H)   h_t
//   h_copy  (n, H)   second destination of h_t; may be null
//   c_copy  (n, H)   second destination of c_t; may be null
//   peep    (R, H)   peephole weights when Cell has them; else null
//
// backward<Cell, scalar_t>(n, H, gates, c, c_prev, dh_a, dh_b, dc, dgates, peep, dpeep)
//   gates   (n, KH)  activated gates saved by forward
//   c       (n, H)   c_t
//   c_prev  (n, H)   c_{t-1}
//   dh_a    (n, H)   dL/dh_t, first term
//   dh_b    (n, H)   dL/dh_t, second term added to the first; may be null
//   dc      (n, H)   in: dL/dc_t from later steps; out: dL/dc_{t-1}
//   dgates  (n, KH)  out: dL/d(pre-activations)
//   peep    (R, H)   peephole weights when Cell has them; else null
//   dpeep   (n, R, H) in the math type (float; double for double): this
//                    step's dL/d(peephole weights) added, per row; may be null
//
// Backends implement these as static members of a policy struct (CpuPointwise,
// CudaPointwise) that the drivers in driver.h are instantiated with.
#include <cstdint>
