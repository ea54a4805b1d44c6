#include "site-agent/artifact_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/bundle.h"
#include "common/files.h"

namespace outpost {

namespace fs = std::filesystem;

namespace {

uint64_t ChunkCount(uint64_t size) { return (size + kArtifactChunkBytes - 1) / kArtifactChunkBytes; }

Status Errno(const std::string& what) {
  const int e = errno;
  if (e == ENOSPC || e == EDQUOT) return Status::ResourceExhausted(what + ": disk full");
  return Status::IoError(what + ": " + strerror(e));
}

// A .have file's text (at most 16 MiB; "" when it cannot be read).
std::string ReadMarks(const std::string& path) {
  std::string text;
  if (int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC); fd >= 0) {
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0 && text.size() < (1u << 24)) {
      text.append(buf, static_cast<size_t>(n));
    }
    close(fd);
  }
  return text;
}

}  // namespace

Result<std::unique_ptr<ArtifactCache>> ArtifactCache::Open(const std::string& dir,
                                                           uint64_t budget) {
  std::error_code ec;
  fs::create_directories(dir + "/partial", ec);
  if (ec) return Status::IoError("create " + dir + "/partial: " + ec.message());
  // Readable by the task user (tasks get paths into it); written by the agent only.
  chmod(dir.c_str(), 0755);
  chmod((dir + "/partial").c_str(), 0700);
  return std::unique_ptr<ArtifactCache>(new ArtifactCache(dir, budget));
}

bool ArtifactCache::Has(const std::string& digest) const {
  struct stat st;
  return IsArtifactDigest(digest) && stat((dir_ + "/" + digest).c_str(), &st) == 0 &&
         S_ISREG(st.st_mode);
}

Result<std::string> ArtifactCache::Use(const std::string& digest) {
  if (!Has(digest)) {
    auto p = Partial(digest);
    if (p) {
      return Status::NotFound("still arriving (" + std::to_string(p->have) + " of " +
                              std::to_string(p->chunks) + " chunks)");
    }
    return Status::NotFound("not in the cache yet (it comes from the hub or a bundle)");
  }
  const std::string path = dir_ + "/" + digest;
  utimensat(AT_FDCWD, path.c_str(), nullptr, 0);  // last use, for the budget
  return path;
}

ArtifactCache::Part* ArtifactCache::LoadPart(const std::string& digest, uint64_t size) {
  if (size == 0 || size > kMaxArtifactBytes) return nullptr;
  auto it = parts_.find(digest);
  if (it != parts_.end()) return it->second.size == size ? &it->second : nullptr;
  Part p;
  p.size = size;
  p.have.assign(ChunkCount(size), '0');
  const std::string text = ReadMarks(dir_ + "/partial/" + digest + ".have");
  // "SIZE\n" then the marks; anything else (another size, a torn file) starts over.
  const auto nl = text.find('\n');
  if (nl != std::string::npos && text.substr(0, nl) == std::to_string(size) &&
      text.size() - nl - 1 == p.have.size()) {
    p.have = text.substr(nl + 1);
    for (char& c : p.have) c = c == '1' ? '1' : '0';
  }
  return &(parts_[digest] = std::move(p));
}

std::optional<ArtifactCache::Progress> ArtifactCache::Partial(const std::string& digest) {
  auto it = parts_.find(digest);
  if (it == parts_.end()) {
    // Not loaded yet: a .have file on disk says how far it came.
    const std::string have_path = dir_ + "/partial/" + digest + ".have";
    struct stat st;
    if (!IsArtifactDigest(digest) || stat(have_path.c_str(), &st) != 0) return std::nullopt;
    const std::string text = ReadMarks(have_path);
    const auto nl = text.find('\n');
    if (nl == std::string::npos) return std::nullopt;
    const uint64_t size = std::strtoull(text.substr(0, nl).c_str(), nullptr, 10);
    if (!LoadPart(digest, size)) return std::nullopt;
    it = parts_.find(digest);
    if (it == parts_.end()) return std::nullopt;
  }
  Progress p;
  p.size = it->second.size;
  p.chunks = it->second.have.size();
  p.have = static_cast<uint64_t>(std::count(it->second.have.begin(), it->second.have.end(), '1'));
  if (p.have == 0) return std::nullopt;
  return p;
}

std::map<std::string, ArtifactCache::Progress> ArtifactCache::Partials() {
  std::map<std::string, Progress> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir_ + "/partial", ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() != 64 + 5 || name.substr(64) != ".have") continue;
    if (auto p = Partial(name.substr(0, 64))) out[name.substr(0, 64)] = *p;
  }
  return out;
}

std::vector<uint64_t> ArtifactCache::Missing(const std::string& digest, uint64_t size, size_t max) {
  std::vector<uint64_t> out;
  if (Has(digest) || size == 0 || size > kMaxArtifactBytes) return out;
  Part* p = LoadPart(digest, size);
  if (!p) {
    DropPart(digest);  // announced with another size before: start over
    p = LoadPart(digest, size);
  }
  if (!p) return out;
  for (uint64_t i = 0; i < p->have.size() && out.size() < max; ++i) {
    if (p->have[i] != '1') out.push_back(i);
  }
  return out;
}

Result<bool> ArtifactCache::PutChunk(const std::string& digest, uint64_t size, uint64_t index,
                                     std::string_view data) {
  if (!IsArtifactDigest(digest)) return Status::InvalidArgument("not an artifact digest");
  if (Has(digest)) return false;  // a duplicate chunk of what is complete
  if (size == 0 || size > kMaxArtifactBytes) {
    return Status::InvalidArgument("an artifact of " + std::to_string(size) +
                                   " bytes (artifacts are 1 byte to 1 GiB)");
  }
  const uint64_t chunks = ChunkCount(size);
  if (index >= chunks) {
    return Status::InvalidArgument("chunk " + std::to_string(index) + " of an artifact of " +
                                   std::to_string(chunks) + " chunks");
  }
  const uint64_t want = index + 1 < chunks ? kArtifactChunkBytes : size - index * kArtifactChunkBytes;
  if (data.size() != want) {
    return Status::InvalidArgument("chunk " + std::to_string(index) + " has " +
                                   std::to_string(data.size()) + " bytes, not " + std::to_string(want));
  }
  Part* p = LoadPart(digest, size);
  if (!p) {
    DropPart(digest);
    p = LoadPart(digest, size);
  }
  if (!p) return Status::Internal("artifact " + digest + " could not be tracked");
  if (p->have[index] == '1') return false;
  const std::string data_path = dir_ + "/partial/" + digest + ".data";
  int fd = open(data_path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Errno("open " + data_path);
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = pwrite(fd, data.data() + off, data.size() - off,
                       static_cast<off_t>(index * kArtifactChunkBytes + off));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      Status s = Errno("write " + data_path);
      close(fd);
      return s;
    }
    off += static_cast<size_t>(n);
  }
  p->have[index] = '1';
  const bool complete = std::find(p->have.begin(), p->have.end(), '0') == p->have.end();
  // The marks are made durable every kMarkEvery chunks (after the data they name is
  // synced): a crash costs at most that many chunks fetched again, never the transfer.
  if (complete || ++p->unmarked >= kMarkEvery) {
    if (fdatasync(fd) != 0) {
      Status s = Errno("sync " + data_path);
      close(fd);
      p->have[index] = '0';
      return s;
    }
  }
  close(fd);
  if (!complete) {
    if (p->unmarked < kMarkEvery) return false;
    p->unmarked = 0;
    Status s = WriteFileAtomically(dir_ + "/partial/" + digest + ".have", std::to_string(size) + "\n" + p->have,
                                   /*durable=*/true);
    if (!s.ok()) {
      p->have[index] = '0';
      return s;
    }
    return false;
  }
  OUTPOST_RETURN_IF_ERROR(Complete(digest, p));
  return true;
}

Status ArtifactCache::Complete(const std::string& digest, Part* p) {
  const std::string data_path = dir_ + "/partial/" + digest + ".data";
  int fd = open(data_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("open " + data_path);
  Blake2bStream h;
  std::string buf(1 << 20, '\0');
  uint64_t total = 0;
  for (;;) {
    ssize_t n = read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Status s = Errno("read " + data_path);
      close(fd);
      return s;
    }
    if (n == 0) break;
    h.Update(std::string_view(buf.data(), static_cast<size_t>(n)));
    total += static_cast<uint64_t>(n);
  }
  close(fd);
  const std::string got = h.HexDigest();
  if (total != p->size || got != digest) {
    DropPart(digest);
    return Status::Corruption("the artifact's chunks hash to " + got + " (" + std::to_string(total) +
                              " bytes), not " + digest + ": discarded, it will be fetched again");
  }
  chmod(data_path.c_str(), 0644);
  const std::string final_path = dir_ + "/" + digest;
  if (rename(data_path.c_str(), final_path.c_str()) != 0) return Errno("rename to " + final_path);
  if (int d = open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); d >= 0) {
    fsync(d);
    close(d);
  }
  DropPart(digest);
  return Status::Ok();
}

Status ArtifactCache::Flush() {
  Status first;
  for (auto& [digest, p] : parts_) {
    if (p.unmarked == 0) continue;
    const std::string data_path = dir_ + "/partial/" + digest + ".data";
    int fd = open(data_path.c_str(), O_WRONLY | O_CLOEXEC);
    Status s = fd >= 0 && fdatasync(fd) == 0 ? Status::Ok() : Errno("sync " + data_path);
    if (fd >= 0) close(fd);
    if (s.ok()) s = WriteFileAtomically(dir_ + "/partial/" + digest + ".have", std::to_string(p.size) + "\n" + p.have,
                                        /*durable=*/true);
    if (s.ok()) p.unmarked = 0;
    if (!s.ok() && first.ok()) first = s;
  }
  return first;
}

ArtifactCache::~ArtifactCache() { Flush().IgnoreError(); }

void ArtifactCache::DropPart(const std::string& digest) {
  parts_.erase(digest);
  unlink((dir_ + "/partial/" + digest + ".data").c_str());
  unlink((dir_ + "/partial/" + digest + ".have").c_str());
}

std::vector<ArtifactCache::Entry> ArtifactCache::List() const {
  std::vector<Entry> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    const std::string name = e.path().filename().string();
    struct stat st;
    if (!IsArtifactDigest(name) || stat(e.path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    out.push_back({name, static_cast<uint64_t>(st.st_size),
                   static_cast<TimeMs>(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1'000'000});
  }
  return out;
}

uint64_t ArtifactCache::bytes() const {
  uint64_t total = 0;
  for (const auto& e : List()) total += e.size;
  return total;
}

std::vector<std::string> ArtifactCache::Evict(const std::set<std::string>& keep) {
  std::vector<std::string> removed;
  if (budget_ == 0) return removed;
  auto entries = List();
  uint64_t total = 0;
  for (const auto& e : entries) total += e.size;
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.last_used < b.last_used; });
  for (const auto& e : entries) {
    if (total <= budget_) break;
    if (keep.count(e.digest)) continue;
    if (unlink((dir_ + "/" + e.digest).c_str()) == 0) {
      total -= e.size;
      removed.push_back(e.digest);
    }
  }
  return removed;
}

}  // namespace outpost
