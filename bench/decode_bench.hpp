// decode_bench.hpp: flashcl-bench's decode mode (`flashcl-bench --decode ...`): times
// forward_kvcache on a KV cache, contiguous or paged, and reports the K/V bytes read per second
// against the device's copy ceiling. Its own options (see --decode --help), parsed here.
#pragma once

namespace flashcl::bench {

// True when the command line asks for the decode mode (--decode, or --mode decode).
bool wants_decode_mode(int argc, char** argv);

// Runs the decode mode; returns the process exit code.
int run_decode_bench(int argc, char** argv);

}  // namespace flashcl::bench
