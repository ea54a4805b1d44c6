// Shared by the site-agent unit tests: a validated definition from YAML text.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "common/workflow/workflow.h"

namespace outpost::testing_defs {

inline std::shared_ptr<const WorkflowDef> Def(const std::string& yaml,
                                              const std::string& file = "test.yaml") {
  auto d = ParseWorkflow(yaml, file);
  EXPECT_TRUE(d.ok()) << d.status().ToString();
  if (!d.ok()) return nullptr;
  return std::make_shared<const WorkflowDef>(std::move(d).value());
}

}  // namespace outpost::testing_defs
