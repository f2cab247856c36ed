// fp8_bench.hpp: flashcl-bench's FP8 mode (`flashcl-bench --dtype e4m3 [--quant tensor|head|block]
// [--hadamard] ...`): quantises FlashAttention-3's outlier inputs with flashcl::quantize_fp8, times
// the fp8 forward beside flashcl's own fp16 forward on the same inputs, and prints the RMSE of each
// against float64 attention on the unquantised inputs. Its own options (--dtype e4m3 --help).
#pragma once

namespace flashcl::bench {

// True when --dtype names an fp8 type (e4m3, e5m2), or --quant / --hadamard is given.
bool wants_fp8_mode(int argc, char** argv);

// Runs the FP8 mode; returns the process exit code.
int run_fp8_bench(int argc, char** argv);

}  // namespace flashcl::bench
