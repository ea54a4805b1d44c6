// RenderShellTemplate against the real /bin/sh: for hostile values in every quoting
// context, the shell prints exactly the value and runs nothing it holds.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/random.h"
#include "common/workflow/template.h"

namespace outpost {
namespace {

// Runs `sh -c cmd` with `env` and returns its stdout.
std::string RunShell(const std::string& cmd, const std::vector<std::pair<std::string, std::string>>& env) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    std::vector<std::string> strings = {"PATH=/usr/bin:/bin"};
    for (const auto& [k, v] : env) strings.push_back(k + "=" + v);
    std::vector<char*> envp;
    for (auto& s : strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    execle("/bin/sh", "sh", "-c", cmd.c_str(), nullptr, envp.data());
    _exit(127);
  }
  close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return out;
}

class ShellTemplateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("outpost_shell_" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    marker_ = (dir_ / "pwned").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::vector<std::string> Hostile() const {
    const std::string m = marker_;
    return {"$(touch " + m + ")",
            "`touch " + m + "`",
            "'; touch " + m + "; echo '",
            "\"; touch " + m + "; echo \"",
            "a\nb; touch " + m,
            "; touch " + m,
            "| touch " + m,
            "&& touch " + m,
            "$(touch " + m + ")'\"`touch " + m + "`",
            "\\\"; touch " + m + " #",
            "*",
            "  two  spaces  ",
            "${HOME}",
            "-n",
            ""};
  }

  std::filesystem::path dir_;
  std::string marker_;
};

TEST_F(ShellTemplateTest, HostileValuesStayValuesInEveryQuotingContext) {
  // Each template prints the value between brackets; the expected output follows.
  const std::vector<std::pair<std::string, std::string>> forms = {
      {"printf '[%s]' {{ params.v }}", "[V]"},
      {"printf '[%s]' \"{{ params.v }}\"", "[V]"},
      {"printf '[%s]' \"pre {{ params.v }} post\"", "[pre V post]"},
      {"printf '[%s]' '{{ params.v }}'", "[V]"},
      {"printf '[%s]' 'pre {{ params.v }} post'", "[pre V post]"},
      {"printf '[%s]' x{{ params.v }}y", "[xVy]"},
      {"x=$(printf '%s' {{ params.v }}); printf '[%s]' \"$x\"", "[V]"},
      {"x=\"$(printf '%s' \"{{ params.v }}\")\"; printf '[%s]' \"$x\"", "[V]"},
      {"x=`printf '%s' {{ params.v }}`; printf '[%s]' \"$x\"", "[V]"},
      {"v={{ params.v }}; printf '[%s]' \"$v\"", "[V]"},
      {"# it's a comment\nprintf '[%s]' {{ params.v }}", "[V]"},
      {"(printf '[%s]' {{ params.v }})", "[V]"},
      // A backslash right before a template is a literal backslash.
      {"printf '[%s]' \\{{ params.v }}", "[\\V]"},
      {"printf '[%s]' \"a\\{{ params.v }}\"", "[a\\V]"},
  };
  for (const auto& value : Hostile()) {
    std::map<std::string, std::string> params = {{"v", value}};
    TemplateContext ctx;
    ctx.params = &params;
    for (const auto& [form, expect_shape] : forms) {
      std::vector<std::pair<std::string, std::string>> env;
      auto cmd = RenderShellTemplate(form, ctx, "OUTPOST_V", &env);
      ASSERT_TRUE(cmd.ok()) << cmd.status().ToString();
      std::string expect = expect_shape;
      expect.replace(expect.find('V'), 1, value);
      EXPECT_EQ(RunShell(*cmd, env), expect) << "template: " << form << "\nvalue: " << value
                                            << "\nrendered: " << *cmd;
      EXPECT_FALSE(std::filesystem::exists(marker_))
          << "template: " << form << "\nvalue: " << value << "\nrendered: " << *cmd;
    }
  }
}

TEST_F(ShellTemplateTest, RandomValuesAreReproducedExactly) {
  // Random bytes from the shell's special characters; the seed is printed on failure.
  const uint64_t seed = 20261130;
  Rng rng(seed);
  const std::string alphabet = "$`'\"\\;|&()<>{}[]*?!#~ \t\nab-=%";
  std::map<std::string, std::string> params;
  TemplateContext ctx;
  ctx.params = &params;
  for (int i = 0; i < 300; ++i) {
    std::string v;
    const size_t len = rng.Next() % 24;
    for (size_t k = 0; k < len; ++k) v += alphabet[rng.Next() % alphabet.size()];
    params["v"] = v;
    for (const char* form : {"printf '[%s]' {{ params.v }}", "printf '[%s]' \"a{{ params.v }}b\"",
                             "printf '[%s]' 'a{{ params.v }}b'"}) {
      std::vector<std::pair<std::string, std::string>> env;
      auto cmd = RenderShellTemplate(form, ctx, "OUTPOST_V", &env);
      ASSERT_TRUE(cmd.ok());
      std::string expect = std::string(form).find("a{{") != std::string::npos ? "[a" + v + "b]" : "[" + v + "]";
      ASSERT_EQ(RunShell(*cmd, env), expect) << "seed " << seed << " case " << i << " form " << form;
    }
  }
  EXPECT_FALSE(std::filesystem::exists(marker_));
}

}  // namespace
}  // namespace outpost
