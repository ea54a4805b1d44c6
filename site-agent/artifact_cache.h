// ArtifactCache: the site's files by content (docs/workflows.md, "Artifacts").
//
// Layout under DIR (the agent's data directory /artifacts):
//   DIGEST                 a complete file whose BLAKE2b-256 is DIGEST (0644, read-only)
//   partial/DIGEST.data    chunks received so far, each at its offset
//   partial/DIGEST.have    which chunks of it are durable (one '0'/'1' per chunk)
// Chunks arrive in any order (over the link from where a transfer stopped, or from bundle
// volumes carried in any order); a chunk's bytes are synced before the .have file that
// names it is replaced (every few chunks), so after a crash a chunk is either marked and
// on disk or fetched again — a cut transfer resumes, never from zero. The last chunk completes the file: it
// is hashed whole and moved into place only if it is the digest, else thrown away.
//
// Budget: Evict removes the least recently used complete files (Use() refreshes) until
// the cache is within its byte budget, never one in `keep` (what a placed or running
// workflow names).
//
// Thread-safety: the agent's loop thread only.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/status.h"

namespace outpost {

class ArtifactCache {
 public:
  static Result<std::unique_ptr<ArtifactCache>> Open(const std::string& dir, uint64_t budget);

  bool Has(const std::string& digest) const;
  // The path of a complete artifact (marks it used now).
  Result<std::string> Use(const std::string& digest);

  // Stores chunk `index` of artifact `digest` of `size` bytes. True when it completed the
  // file (verified and in place). A digest mismatch discards the partial file.
  Result<bool> PutChunk(const std::string& digest, uint64_t size, uint64_t index,
                        std::string_view data);
  // The chunk indices of `digest` still missing, in order, at most `max`.
  std::vector<uint64_t> Missing(const std::string& digest, uint64_t size, size_t max);
  struct Progress {
    uint64_t have = 0;
    uint64_t chunks = 0;
    uint64_t size = 0;
  };
  // What a partial transfer holds (nullopt: nothing received).
  std::optional<Progress> Partial(const std::string& digest);
  std::map<std::string, Progress> Partials();
  struct Entry {
    std::string digest;
    uint64_t size = 0;
    TimeMs last_used = 0;
  };
  std::vector<Entry> List() const;
  std::vector<std::string> Evict(const std::set<std::string>& keep);
  uint64_t bytes() const;
  // Makes every chunk received so far durable and marked (after a bundle volume, at
  // shutdown; the destructor does it too).
  Status Flush();
  ~ArtifactCache();
  uint64_t budget() const { return budget_; }
  const std::string& dir() const { return dir_; }

 private:
  static constexpr int kMarkEvery = 8;  // chunks between durable marks
  struct Part {
    uint64_t size = 0;
    std::string have;  // '0'/'1' per chunk
    int unmarked = 0;  // chunks marked in memory since the .have file was written
  };
  ArtifactCache(std::string dir, uint64_t budget) : dir_(std::move(dir)), budget_(budget) {}
  Part* LoadPart(const std::string& digest, uint64_t size);
  Status Complete(const std::string& digest, Part* p);
  void DropPart(const std::string& digest);

  std::string dir_;
  uint64_t budget_;
  std::map<std::string, Part> parts_;
};

}  // namespace outpost
