#include "site-agent/workflow_parser.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace outpost {

namespace {

// ParseWorkflow and the zone check, as a file is checked. ParseWorkflow catches what its
// parser throws; this is the boundary for anything else, so the worker thread never dies
// with a request in hand.
WorkflowParser::Parsed ParseShared(const std::string& source, const std::string& origin) {
  try {
    auto def = ParseWorkflow(source, origin);
    if (!def.ok()) return def.status();
    // Whatever the agent is sent is checked as a file would be, its zone included.
    if (Status z = CheckScheduleZone(*def, origin); !z.ok()) return z;
    return std::make_shared<const WorkflowDef>(std::move(def).value());
  } catch (const std::exception& e) {
    return Status::Internal(origin + ": internal error while validating: " + e.what());
  }
}

}  // namespace

Result<std::unique_ptr<WorkflowParser>> WorkflowParser::Create(size_t inline_bytes,
                                                               size_t cache_entries) {
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return Status::IoError(std::string("eventfd: ") + strerror(errno));
  return std::unique_ptr<WorkflowParser>(
      new WorkflowParser(inline_bytes, std::max<size_t>(1, cache_entries), fd));
}

WorkflowParser::WorkflowParser(size_t inline_bytes, size_t cache_entries, int wake_fd)
    : inline_bytes_(inline_bytes), cache_entries_(cache_entries), wake_fd_(wake_fd) {
  worker_ = std::thread([this] { Work(); });
}

WorkflowParser::~WorkflowParser() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  worker_.join();
  close(wake_fd_);
}

std::string WorkflowParser::KeyOf(const std::string& source, const std::string& origin) {
  std::string keyed;
  keyed.reserve(origin.size() + 1 + source.size());
  keyed.append(origin).push_back('\0');
  keyed.append(source);
  return HexHash(keyed);
}

std::optional<WorkflowParser::Parsed> WorkflowParser::Get(const std::string& source,
                                                         const std::string& origin) {
  const std::string key = KeyOf(source, origin);
  if (const Parsed* hit = Cached(key)) return *hit;
  if (source.size() <= inline_bytes_) {
    ++counters_.parsed_inline;
    Parsed p = ParseShared(source, origin);
    Remember(key, p);
    return p;
  }
  if (queued_.insert(key).second) {
    {
      std::lock_guard<std::mutex> l(mu_);
      jobs_.push_back({key, source, origin});
    }
    cv_.notify_one();
  }
  return std::nullopt;
}

WorkflowParser::Parsed WorkflowParser::GetNow(const std::string& source, const std::string& origin) {
  const std::string key = KeyOf(source, origin);
  if (const Parsed* hit = Cached(key)) return *hit;
  ++counters_.parsed_inline;
  Parsed p = ParseShared(source, origin);
  Remember(key, p);
  return p;
}

const WorkflowParser::Parsed* WorkflowParser::Cached(const std::string& key) {
  auto it = cache_.find(key);
  if (it == cache_.end()) return nullptr;
  ++counters_.cache_hits;
  recency_.splice(recency_.begin(), recency_, it->second.second);
  return &it->second.first;
}

size_t WorkflowParser::Collect() {
  uint64_t ignored = 0;
  while (read(wake_fd_, &ignored, sizeof ignored) > 0) {
  }
  std::deque<std::pair<std::string, Parsed>> done;
  {
    std::lock_guard<std::mutex> l(mu_);
    done.swap(done_);
  }
  for (auto& [key, parsed] : done) {
    queued_.erase(key);
    ++counters_.parsed_background;
    Remember(key, std::move(parsed));
  }
  return done.size();
}

void WorkflowParser::Remember(const std::string& key, Parsed parsed) {
  if (auto it = cache_.find(key); it != cache_.end()) {
    recency_.erase(it->second.second);
    cache_.erase(it);
  }
  recency_.push_front(key);
  cache_.emplace(key, std::make_pair(std::move(parsed), recency_.begin()));
  while (cache_.size() > cache_entries_) {
    cache_.erase(recency_.back());
    recency_.pop_back();
  }
}

void WorkflowParser::Work() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [this] { return stop_ || !jobs_.empty(); });
      if (stop_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    Parsed p = ParseShared(job.source, job.origin);
    {
      std::lock_guard<std::mutex> l(mu_);
      done_.emplace_back(std::move(job.key), std::move(p));
    }
    const uint64_t one = 1;
    // A full counter (2^64 - 2 wake-ups) cannot happen; a failed write leaves the result
    // queued, collected at the next wake-up of any kind.
    [[maybe_unused]] ssize_t w = write(wake_fd_, &one, sizeof one);
  }
}

}  // namespace outpost
