#include "common/status.h"

#include <gtest/gtest.h>

namespace outpost {
namespace {

Result<int> Half(int x) {
  if (x % 2) return Status::InvalidArgument(std::to_string(x) + " is odd");
  return x / 2;
}

Result<int> Quarter(int x) {
  OUTPOST_ASSIGN_OR_RETURN(int h, Half(x));
  return Half(h);
}

TEST(StatusTest, CarriesCodeMessageAndContext) {
  Status s = Status::NotFound("run r1");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.ToString(), "not found: run r1");
  EXPECT_EQ(s.WithContext("run show").message(), "run show: run r1");
  EXPECT_TRUE(Status::Ok().WithContext("x").ok());
}

TEST(StatusTest, ResultPropagatesErrors) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).status().message(), "3 is odd");
  EXPECT_EQ(Quarter(5).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace outpost
