// backward_bench.hpp: flashcl-bench's backward mode (`flashcl-bench --backward ...`): times
// flashcl::backward (after a forward that makes O and LSE) and reports TFLOP/s as the papers count
// them. Its own options (see --backward --help), parsed here.
#pragma once

namespace flashcl::bench {

// True when the command line asks for the backward mode (--backward, or --mode bwd).
bool wants_backward_mode(int argc, char** argv);

// Runs the backward mode; returns the process exit code.
int run_backward_bench(int argc, char** argv);

}  // namespace flashcl::bench
