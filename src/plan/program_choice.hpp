// program_choice.hpp: a program of kernels/programs.txt together with the -D options it is built
// with, as the plans name it (forward_programs.hpp, backward_programs.hpp, kvcache_plan.hpp). The
// option strings are part of what a plan decides: the NVIDIA kernels' speed was measured with
// these exact strings, and tests/data/plan_options.txt records them, so identical strings mean
// identical binaries. Launchers build what a ProgramChoice names and compose no options.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "base/errors.hpp"
#include "program/programs.hpp"

namespace flashcl::detail {

struct ProgramChoice {
  const char* name = "";                            // its line in kernels/programs.txt
  const std::vector<std::string>* files = nullptr;  // programs::<name>
  std::string options;                              // -D options (the program cache's key with the files)
  bool arch_ptx = false;                            // built through retargeted PTX (BuildRoute::ArchPtx: wgmma)
};

// `files` (one of programs::...) built with `options`; its name is looked up in the manifest's table.
inline ProgramChoice choose_program(const std::vector<std::string>& files, std::string options,
                                    bool arch_ptx = false) {
  for (const programs::Named& p : programs::all)
    if (p.files == &files) return ProgramChoice{p.name, p.files, std::move(options), arch_ptx};
  fail(Status::InternalError, "choose_program: a file list that is not a program of kernels/programs.txt");
}

}  // namespace flashcl::detail
