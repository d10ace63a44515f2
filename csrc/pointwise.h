#pragma once
// The per-step pointwise interface every backend provides (framework-free:
// raw pointers, row-major, contiguous rows). n rows of H hidden units.
//
// forward<scalar_t>(n, H, gates, b_ih, b_hh, c_prev, c_out, h_out, h_copy, c_copy)
//   gates   (n, 4H)  in: pre-activations (i, f, g, o); out: activated gates
//   b_ih    (4H)     added to the pre-activations; may be null
//   b_hh    (4H)     added to the pre-activations; may be null
//   c_prev  (n, H)   c_{t-1}; may alias c_out
//   c_out   (n, H)   c_t = f * c_{t-1} + i * g
//   h_out   (n, H)   h_t = o * tanh(c_t)
//   h_copy  (n, H)   second destination of h_t; may be null
//   c_copy  (n, H)   second destination of c_t; may be null
//
// backward<scalar_t>(n, H, gates, c, c_prev, dh_a, dh_b, dc, dgates)
//   gates   (n, 4H)  activated gates saved by forward
//   c       (n, H)   c_t
//   c_prev  (n, H)   c_{t-1}
//   dh_a    (n, H)   dL/dh_t, first term
//   dh_b    (n, H)   dL/dh_t, second term added to the first; may be null
//   dc      (n, H)   in: dL/dc_t from later steps; out: dL/dc_{t-1}
//   dgates  (n, 4H)  out: dL/d(pre-activations)
//
// Backends implement these as static members of a policy struct (CpuPointwise,
// CudaPointwise) that the drivers in driver.h are instantiated with.
#include <cstdint>
