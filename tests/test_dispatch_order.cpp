// test_dispatch_order.cpp: common.cl's block_coordinates, the order in which fa2's work-groups take
// their (Q block, head, batch), run on the default device for grids with and without a causal
// tail: every coordinate is taken exactly once (a wrong renumbering would leave rows unwritten or
// written twice), causal grids go longest block first within each pair of the bulk and across the
// pairs of the tail, and other grids keep the plain order.
#include <fstream>
#include <sstream>
#include <tuple>

#include "attn_args.h"
#include "support.hpp"

namespace flashcl::test {
namespace {

std::string read_kernel_file(const char* name) {
  std::ifstream in(std::string(FLASHCL_SOURCE_DIR) + "/kernels/" + name);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Each work-group writes its (Q block, head, batch) at its linear id, the order groups start in.
const char* kRecorder = R"CLC(
__kernel void record(__global int* out, const AttnArgs args) {
  int q_block, h, b;
  block_coordinates(&args, &q_block, &h, &b);
  const int at = get_group_id(0) + get_num_groups(0) * (get_group_id(1) + get_num_groups(1) * get_group_id(2));
  out[3 * at] = q_block;
  out[3 * at + 1] = h;
  out[3 * at + 2] = b;
}
)CLC";

struct Grid {
  int blocks, heads, batch, tail;
};

// (q_block, h, b) per linear id for `grid`, from a program built with CAUSAL = `causal`.
std::vector<int> record(const Grid& grid, bool causal) {
  const std::string source = read_kernel_file("shared/attn_args.h") + read_kernel_file("shared/common.cl") + kRecorder;
  const char* text = source.c_str();
  cl_int err = CL_SUCCESS;
  cl_program program = clCreateProgramWithSource(session().context(), 1, &text, nullptr, &err);
  check(err, "clCreateProgramWithSource");
  cl_device_id device = session().device();
  const std::string options = causal ? "-DCAUSAL=1" : "-DCAUSAL=0";
  check(clBuildProgram(program, 1, &device, options.c_str(), nullptr, nullptr), "clBuildProgram");
  cl_kernel kernel = clCreateKernel(program, "record", &err);
  check(err, "clCreateKernel");
  const std::size_t groups = static_cast<std::size_t>(grid.blocks) * grid.heads * grid.batch;
  std::vector<int> out(3 * groups, -1);
  cl_mem buffer = clCreateBuffer(session().context(), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, out.size() * sizeof(int),
                                 out.data(), &err);
  check(err, "clCreateBuffer");
  AttnArgs args{};
  args.heads = grid.heads;
  args.batch = grid.batch;
  args.order_tail = grid.tail;
  check(clSetKernelArg(kernel, 0, sizeof buffer, &buffer), "clSetKernelArg");
  check(clSetKernelArg(kernel, 1, sizeof args, &args), "clSetKernelArg");
  const std::size_t global[3] = {static_cast<std::size_t>(grid.blocks), static_cast<std::size_t>(grid.heads),
                                 static_cast<std::size_t>(grid.batch)};
  const std::size_t local[3] = {1, 1, 1};
  check(clEnqueueNDRangeKernel(session().queue(), kernel, 3, nullptr, global, local, 0, nullptr, nullptr),
        "clEnqueueNDRangeKernel");
  check(clEnqueueReadBuffer(session().queue(), buffer, CL_TRUE, 0, out.size() * sizeof(int), out.data(), 0, nullptr,
                            nullptr),
        "clEnqueueReadBuffer");
  clReleaseMemObject(buffer);
  clReleaseKernel(kernel);
  clReleaseProgram(program);
  return out;
}

class DispatchOrder : public testing::TestWithParam<std::tuple<Grid, bool>> {};

TEST_P(DispatchOrder, TakesEveryBlockOnceInItsOrder) {
  const auto& [grid, causal] = GetParam();
  const std::vector<int> got = record(grid, causal);
  const int pairs = grid.heads * grid.batch, bulk = causal ? pairs - grid.tail : pairs;
  std::vector<int> seen(got.size() / 3, 0);
  for (std::size_t at = 0; at < seen.size(); ++at) {
    const int q_block = got[3 * at], h = got[3 * at + 1], b = got[3 * at + 2];
    ASSERT_TRUE(q_block >= 0 && q_block < grid.blocks && h >= 0 && h < grid.heads && b >= 0 && b < grid.batch)
        << "work-group " << at << " took (" << q_block << ", " << h << ", " << b << ")";
    ++seen[(static_cast<std::size_t>(b) * grid.heads + h) * grid.blocks + q_block];
    const int pair = b * grid.heads + h, linear_pair = static_cast<int>(at) / grid.blocks;
    const int rank = static_cast<int>(at) % grid.blocks;
    if (!causal) {  // plain order
      EXPECT_EQ(pair, linear_pair) << at;
      EXPECT_EQ(q_block, rank) << at;
    } else if (linear_pair < bulk) {  // each pair's blocks together, the last (longest) first
      EXPECT_EQ(pair, linear_pair) << at;
      EXPECT_EQ(q_block, grid.blocks - 1 - rank) << at;
    } else {  // the tail: rank-major across its pairs
      const int tail_at = static_cast<int>(at) - bulk * grid.blocks;
      EXPECT_EQ(q_block, grid.blocks - 1 - tail_at / grid.tail) << at;
      EXPECT_EQ(pair, bulk + tail_at % grid.tail) << at;
    }
  }
  for (std::size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], 1) << "coordinate " << i << " taken " << seen[i] << " times";
}

INSTANTIATE_TEST_SUITE_P(Grids, DispatchOrder,
                         testing::Combine(testing::Values(Grid{7, 3, 4, 5},    // bulk of 7 pairs, tail of 5
                                                          Grid{5, 2, 3, 6},    // all pairs in the tail
                                                          Grid{4, 3, 2, 0},    // no tail
                                                          Grid{1, 5, 1, 1},    // one block a pair
                                                          Grid{33, 16, 1, 9}), // one batch, H100-like tail
                                          testing::Bool()),
                         [](const testing::TestParamInfo<std::tuple<Grid, bool>>& info) {
                           const Grid& g = std::get<0>(info.param);
                           return "T" + std::to_string(g.blocks) + "H" + std::to_string(g.heads) + "B" +
                                  std::to_string(g.batch) + "tail" + std::to_string(g.tail) +
                                  (std::get<1>(info.param) ? "_causal" : "_plain");
                         });

}  // namespace
}  // namespace flashcl::test
