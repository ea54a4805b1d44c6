// WorkflowParser: workflow sources parsed and validated once, and large ones off the
// agent's loop.
//
// Every run start from the hub carries its workflow's source, and a placement carries it
// again; a 20,000-task file takes most of a second to parse and validate. On the loop
// thread that second is a second in which `status`, the hub link and finished tasks wait.
// So the agent asks this class instead of calling ParseWorkflow:
//  - a result already made (for the same source and origin) comes from a small cache;
//  - a source up to `inline_bytes` is parsed at once, on the caller's thread (the usual
//    file takes well under a millisecond);
//  - a larger one is handed to a worker thread and Get answers nullopt: the caller puts
//    the request aside and asks again once wake_fd() is readable and Collect() ran.
// Definitions are immutable and shared (the engine holds them by shared_ptr), so a run
// started from a cached definition is the same as one started from a fresh parse.
//
// Thread-safety: Get, GetNow and Collect from one thread (the agent's loop); the worker
// only parses and hands results back through a queue.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>

#include "common/status.h"
#include "common/workflow/workflow.h"

namespace outpost {

class WorkflowParser {
 public:
  using Parsed = Result<std::shared_ptr<const WorkflowDef>>;

  struct Counters {
    uint64_t parsed_inline = 0;
    uint64_t parsed_background = 0;
    uint64_t cache_hits = 0;
  };

  // inline_bytes: the largest source parsed on the caller's thread; cache_entries: how
  // many results (definitions or errors) are kept, least recently used dropped first.
  // Fails only if the wake-up descriptor cannot be made.
  static Result<std::unique_ptr<WorkflowParser>> Create(size_t inline_bytes = 64 * 1024,
                                                        size_t cache_entries = 64);
  ~WorkflowParser();
  WorkflowParser(const WorkflowParser&) = delete;
  WorkflowParser& operator=(const WorkflowParser&) = delete;

  // The definition for `source` (errors name `origin`), or nullopt while the worker
  // parses it.
  std::optional<Parsed> Get(const std::string& source, const std::string& origin);
  // The same, always answered: parses on this thread if nothing is cached (for paths that
  // cannot wait, such as start-up and bundle imports).
  Parsed GetNow(const std::string& source, const std::string& origin);

  // Readable when the worker finished something; Collect() drains it and moves finished
  // results into the cache, returning how many.
  int wake_fd() const { return wake_fd_; }
  size_t Collect();
  // Sources handed to the worker and not yet collected.
  size_t waiting() const { return queued_.size(); }
  const Counters& counters() const { return counters_; }

 private:
  WorkflowParser(size_t inline_bytes, size_t cache_entries, int wake_fd);
  void Work();
  // The cached result for `key` (now the most recent), or null.
  const Parsed* Cached(const std::string& key);
  void Remember(const std::string& key, Parsed parsed);
  static std::string KeyOf(const std::string& source, const std::string& origin);

  const size_t inline_bytes_;
  const size_t cache_entries_;
  const int wake_fd_;
  Counters counters_;

  // The cache, touched only by the caller's thread: key -> result, with recency order.
  std::list<std::string> recency_;  // front: most recent
  std::map<std::string, std::pair<Parsed, std::list<std::string>::iterator>> cache_;
  std::set<std::string> queued_;  // keys handed to the worker, not yet collected

  // Between the threads.
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  struct Job {
    std::string key, source, origin;
  };
  std::deque<Job> jobs_;
  std::deque<std::pair<std::string, Parsed>> done_;
  std::thread worker_;
};

}  // namespace outpost
