// fault_injection.cpp: the rules behind FLASHCL_FAULT_INJECT and flashcl::testing::inject_fault.
#include "base/fault_injection.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <sstream>
#include <vector>

#include "base/errors.hpp"
#include "plan/overrides.hpp"

namespace flashcl::detail {
namespace {

struct Rule {
  std::string call;
  int nth = 1;
  cl_int code = CL_OUT_OF_RESOURCES;
  int seen = 0;
  bool fired = false;
};

std::atomic<bool> g_armed{false};
std::mutex g_mutex;
std::vector<Rule> g_rules;
int g_fired = 0;
std::once_flag g_env_once;

// "name:N[:code]" items separated by commas; throws InvalidArgument naming the bad item.
std::vector<Rule> parse(const std::string& spec) {
  std::vector<Rule> rules;
  std::stringstream items(spec);
  std::string item;
  while (std::getline(items, item, ',')) {
    if (item.empty()) continue;
    Rule rule;
    const auto colon = item.find(':');
    rule.call = item.substr(0, colon);
    int consumed = 0;
    long nth = 0, code = CL_OUT_OF_RESOURCES;
    bool ok = colon != std::string::npos && !rule.call.empty();
    if (ok) {
      const std::string rest = item.substr(colon + 1);
      const int n = std::sscanf(rest.c_str(), "%ld%n:%ld%n", &nth, &consumed, &code, &consumed);
      ok = n >= 1 && static_cast<std::size_t>(consumed) == rest.size() && nth >= 1 && nth <= 1000000 && code < 0;
    }
    if (!ok)
      fail(Status::InvalidArgument, "FLASHCL_FAULT_INJECT: expected name:N[:negative code], got '", item, "'");
    rule.nth = static_cast<int>(nth);
    rule.code = static_cast<cl_int>(code);
    rules.push_back(rule);
  }
  return rules;
}

void add_rules(std::vector<Rule> rules) {
  std::lock_guard<std::mutex> lock(g_mutex);
  for (auto& r : rules) g_rules.push_back(std::move(r));
  g_armed = !g_rules.empty();
}

void read_environment() {
  const std::string& spec = process_overrides().fault_inject;
  if (spec.empty()) return;
  try {
    add_rules(parse(spec));
  } catch (const Error& e) {
    // Never fatal: a stray variable must not take down a host process. Said on stderr (a test that
    // relied on the rule fails anyway, since nothing fires) and otherwise ignored.
    std::fprintf(stderr, "flashcl: %s (ignored)\n", e.what());
  }
}

}  // namespace

cl_int injected_fault(const char* call) noexcept {
  std::call_once(g_env_once, read_environment);
  if (!g_armed.load(std::memory_order_relaxed)) return CL_SUCCESS;
  std::lock_guard<std::mutex> lock(g_mutex);
  for (Rule& r : g_rules)
    if (!r.fired && r.call == call && ++r.seen == r.nth) {
      r.fired = true;
      ++g_fired;
      return r.code;
    }
  return CL_SUCCESS;
}

}  // namespace flashcl::detail

namespace flashcl::testing {

void inject_fault(const std::string& call, int nth, cl_int code) {
  if (call.empty() || nth < 1 || code >= 0)
    detail::fail(Status::InvalidArgument, "inject_fault: need a call name, nth >= 1 and a negative code");
  std::call_once(detail::g_env_once, detail::read_environment);
  detail::Rule rule;
  rule.call = call;
  rule.nth = nth;
  rule.code = code;
  detail::add_rules({rule});
}

void inject_faults(const std::string& spec) {
  std::call_once(detail::g_env_once, detail::read_environment);
  detail::add_rules(detail::parse(spec));
}

void clear_faults() {
  std::call_once(detail::g_env_once, detail::read_environment);
  std::lock_guard<std::mutex> lock(detail::g_mutex);
  detail::g_rules.clear();
  detail::g_fired = 0;
  detail::g_armed = false;
}

int faults_fired() {
  std::lock_guard<std::mutex> lock(detail::g_mutex);
  return detail::g_fired;
}

}  // namespace flashcl::testing
