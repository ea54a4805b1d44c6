// ErrorOf: what ParseWorkflow says about a file that must not load (the workflow tests'
// shared helper). The file is labelled wf.yaml in messages.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "common/workflow/workflow.h"

namespace outpost::testing {

inline std::string ErrorOf(const std::string& yaml) {
  auto d = ParseWorkflow(yaml, "wf.yaml");
  EXPECT_FALSE(d.ok()) << "expected an error for:\n" << yaml;
  return d.ok() ? "" : d.status().message();
}

}  // namespace outpost::testing
