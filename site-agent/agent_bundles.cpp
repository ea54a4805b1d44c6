// The agent's artifacts (fetched over the link in chunks, or carried in bundles) and
// bundles (the two sync streams on removable media). docs/protocol.md, "Artifacts" and
// "Bundles"; docs/operations.md, "An air-gapped site".
//
// A bundle from the hub goes through the same path as a BATCH of commands: entries at or
// below the inbox watermark are skipped, a volume that starts past watermark+1 is a gap
// (reported, nothing applied from it), the rest applied with the new watermark in one
// write (Agent::ApplyCommands). The hub's watermark of our events trims our log as an ACK
// would. A return bundle carries the events after what the hub acknowledged and our
// watermark of its commands.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <filesystem>

#include "common/bundle.h"
#include "common/json_fields.h"
#include "common/trust.h"
#include "common/ulid.h"
#include "site-agent/agent.h"
#include "site-agent/site_bundles.h"

namespace outpost {

using json = nlohmann::json;

namespace {

constexpr DurationMs kFetchStall = 10'000;   // re-ask for chunks not answered in this time
constexpr DurationMs kFetchPause = 30'000;   // after the hub refused an artifact
constexpr size_t kFetchWindow = 8;           // chunks in flight
constexpr DurationMs kHousekeeping = 2'000;  // inbox scan and cache budget

// Test-only fault switch (docs/architecture.md, "Planted faults"): the process kills
// itself with SIGKILL after applying this many records of a bundle (imports cut by kill -9).
long KillAfterRecords() {
  const char* v = getenv("OUTPOST_TEST_KILL_IMPORT_AFTER");
  return v ? std::strtol(v, nullptr, 10) : -1;
}

Status WriteAll(int fd, std::string_view bytes) {
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = write(fd, bytes.data() + off, bytes.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::IoError(std::string("write the bundle: ") + strerror(errno));
    off += static_cast<size_t>(n);
  }
  return Status::Ok();
}

}  // namespace

Status Agent::OpenArtifacts() {
  OUTPOST_ASSIGN_OR_RETURN(artifacts_,
                           ArtifactCache::Open(config_.data_dir + "/artifacts", config_.artifact_budget));
  // The first housekeeping pass (inbox scan, cache budget) is due at once: media already in
  // the inbox when the agent starts is imported now, not at the loop's first other wake-up.
  housekeeping_at_ = clock_.Now();
  return Status::Ok();
}

const std::set<std::string>& Agent::NeededArtifacts() const { return needed_artifacts_; }

void Agent::NoteArtifactCached(const std::string& digest, uint64_t size) {
  ++counters_.artifacts_cached;
  Event e;
  e.time = clock_.Now();
  e.type = static_cast<uint8_t>(EventType::kArtifactCached);
  e.message = digest;
  e.output = std::to_string(size);
  pending_.events.push_back(std::move(e));
  spdlog::info("agent.artifact_cached digest={} size={}", digest, size);
}

void Agent::ArtifactsTick() {
  const TimeMs now = clock_.Now();
  if (now >= housekeeping_at_) {
    housekeeping_at_ = now + kHousekeeping;
    // The budget: least recently used first, never what a known workflow or an active
    // run names.
    std::set<std::string> keep = engine_->ActiveArtifacts();
    keep.insert(NeededArtifacts().begin(), NeededArtifacts().end());
    for (const auto& digest : artifacts_->Evict(keep)) {
      ++counters_.artifacts_evicted;
      Event e;
      e.time = now;
      e.type = static_cast<uint8_t>(EventType::kArtifactEvicted);
      e.message = digest;
      pending_.events.push_back(std::move(e));
      spdlog::info("agent.artifact_evicted digest={} budget={}", digest, config_.artifact_budget);
    }
    if (!config_.inbox_dir.empty()) ScanInbox();
  }
  if (!session_ || !hub_ || !session_->established()) {
    fetch_outstanding_.clear();
    return;
  }
  if (!fetch_digest_.empty() && (artifacts_->Has(fetch_digest_) || !NeededArtifacts().count(fetch_digest_))) {
    fetch_digest_.clear();
    fetch_outstanding_.clear();
  }
  if (fetch_digest_.empty()) {
    for (const auto& d : NeededArtifacts()) {
      if (artifacts_->Has(d)) continue;
      if (auto p = fetch_paused_.find(d); p != fetch_paused_.end() && p->second > now) continue;
      fetch_digest_ = d;
      auto partial = artifacts_->Partial(d);
      fetch_size_ = partial ? partial->size : 0;
      fetch_outstanding_.clear();
      spdlog::info("agent.artifact_fetch digest={} resume_chunks={}", d, partial ? partial->have : 0);
      break;
    }
    if (fetch_digest_.empty()) return;
  }
  if (!fetch_outstanding_.empty() && now - fetch_progress_at_ > kFetchStall) {
    fetch_outstanding_.clear();  // lost on the way (a cut link): ask again from where we are
  }
  std::vector<uint64_t> want;
  if (fetch_size_ == 0) {
    if (fetch_outstanding_.empty()) want.push_back(0);  // the first answer tells the size
  } else {
    for (uint64_t i : artifacts_->Missing(fetch_digest_, fetch_size_, kFetchWindow * 2)) {
      if (fetch_outstanding_.size() + want.size() >= kFetchWindow) break;
      if (!fetch_outstanding_.count(i)) want.push_back(i);
    }
  }
  for (uint64_t i : want) {
    Message m;
    m.t = static_cast<uint8_t>(MsgType::kArtifactGet);
    m.digest = fetch_digest_;
    m.seq = i;
    if (!hub_->Send(EncodeMessage(m)).ok()) break;
    if (fetch_outstanding_.empty()) fetch_progress_at_ = now;
    fetch_outstanding_.insert(i);
  }
}

void Agent::OnArtifactChunk(const Message& m) {
  if (m.digest != fetch_digest_ || !fetch_outstanding_.count(m.seq)) return;  // stale
  fetch_outstanding_.erase(m.seq);
  fetch_progress_at_ = clock_.Now();
  if (!m.message.empty()) {
    ++counters_.artifact_errors;
    spdlog::warn("agent.artifact_refused digest={} chunk={} reason=\"{}\"", fetch_digest_, m.seq,
                 SafeText(m.message));
    fetch_paused_[fetch_digest_] = clock_.Now() + kFetchPause;
    fetch_digest_.clear();
    fetch_outstanding_.clear();
    return;
  }
  fetch_size_ = m.size;
  ++counters_.artifact_chunks_received;
  auto done = artifacts_->PutChunk(m.digest, m.size, m.seq, m.data);
  if (!done.ok()) {
    ++counters_.artifact_errors;
    spdlog::warn("agent.artifact_chunk_failed digest={} chunk={} error=\"{}\"", m.digest, m.seq,
                 done.status().message());
    fetch_outstanding_.clear();
    if (done.status().code() == Code::kResourceExhausted) {
      fetch_paused_[m.digest] = clock_.Now() + kFetchPause;
      fetch_digest_.clear();
    }
    return;
  }
  if (*done) {
    NoteArtifactCached(m.digest, m.size);
    fetch_digest_.clear();
    fetch_outstanding_.clear();
  }
}

json Agent::ArtifactsJson() {
  json cached = json::array(), partial = json::object();
  uint64_t bytes = 0;
  auto need = NeededArtifacts();
  for (const auto& e : artifacts_->List()) {
    bytes += e.size;
    cached.push_back({{"digest", e.digest},
                      {"size", e.size},
                      {"last_used", FormatTime(e.last_used)},
                      {"needed", need.count(e.digest) > 0}});
  }
  for (const auto& [d, p] : artifacts_->Partials()) {
    partial[d] = {{"chunks", p.chunks}, {"have", p.have}, {"size", p.size}};
  }
  json missing = json::array();
  for (const auto& d : need) {
    if (!artifacts_->Has(d)) missing.push_back(d);
  }
  return {{"dir", artifacts_->dir()},
          {"budget_bytes", config_.artifact_budget},
          {"bytes", bytes},
          {"cached", cached},
          {"transferring", partial},
          {"missing", missing},
          {"fetching", fetch_digest_},
          {"counters",
           {{"chunks_received", counters_.artifact_chunks_received},
            {"errors", counters_.artifact_errors},
            {"cached", counters_.artifacts_cached},
            {"evicted", counters_.artifacts_evicted}}}};
}

json Agent::ImportBundle(int fd) {
  auto refuse = [this](const Status& why) {
    ++counters_.bundle_volumes_refused;
    spdlog::warn("agent.bundle_refused error=\"{}\"", SafeText(why.message()));
    // A volume this site cannot use is bad input, whatever is wrong with it (exit 2).
    return Error(why.message(), why.code() == Code::kFailedPrecondition ? "conflict" : "invalid");
  };
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    return refuse(Status::InvalidArgument("a bundle must be a regular file"));
  }
  // The whole volume's framing first: a volume cut short is refused before anything.
  {
    BundleReader check(ReadFromFd(fd));
    Status s = check.ReadHead();
    if (s.ok()) s = check.CheckFraming();
    if (!s.ok()) return refuse(s);
  }
  if (lseek(fd, 0, SEEK_SET) != 0) {
    return refuse(Status::IoError("the bundle file cannot be read from its start"));
  }
  BundleReader reader(ReadFromFd(fd));
  if (Status s = reader.ReadHead(); !s.ok()) return refuse(s);
  const BundleHeader& h = reader.header();
  if (Status s = CheckDownHeader(h, keys_.public_z85, config_.hub_key); !s.ok()) return refuse(s);
  SiteBundleHooks hooks;
  hooks.incarnation = store_->log().incarnation();
  hooks.down_applied = [this] { return down_applied_; };
  hooks.apply_commands = [this](uint64_t first, const std::vector<std::string>& entries) {
    return ApplyCommands(first, entries, /*may_wait=*/false);
  };
  hooks.log_head = [this] { return store_->log().head(); };
  hooks.log_acked = [this] { return store_->log().acked(); };
  hooks.ack_events = [this](uint64_t seq) { return store_->log().AckAndTrim(seq); };
  hooks.put_chunk = [this](const BundleRecord& r) {
    return artifacts_->PutChunk(r.digest, r.size, r.offset / kArtifactChunkBytes, r.data);
  };
  if (const long kill_after = KillAfterRecords(); kill_after >= 0) {
    hooks.after_record = [this, kill_after](size_t done) {
      if (static_cast<long>(done) < kill_after) return;
      Flush();
      spdlog::warn("agent.test_kill_during_import records={}", done);
      raise(SIGKILL);
    };
  }
  const uint64_t rejected_before = counters_.commands_rejected;
  SiteImport r = ImportDownVolume(reader, keys_, hooks);
  // Commands taken from the volume that this site's checks refused (unsigned, not allowed
  // by the policy, ...): consumed like the rest, each recorded as command.rejected.
  const uint64_t refused = counters_.commands_rejected - rejected_before;
  if (Status s = artifacts_->Flush(); !s.ok()) {
    spdlog::warn("agent.artifact_flush_failed error=\"{}\"", s.ToString());
  }
  for (const auto& [digest, size] : r.completed) NoteArtifactCached(digest, size);
  // A volume that stopped part-way is refused (what it applied before stays applied).
  if (!r.problem.empty()) {
    ++counters_.bundle_volumes_refused;
  } else {
    ++counters_.bundle_volumes_imported;
  }
  json gap = r.gap ? json{{"missing_from", r.gap->first}, {"missing_to", r.gap->second}} : json(nullptr);
  json result = {{"bundle", h.id},
                 {"volume", h.volume},
                 {"volumes", h.volumes},
                 {"commands", {{"received", r.received}, {"applied", r.applied}, {"duplicates", r.duplicates},
                               {"refused", refused}}},
                 {"commands_applied_through", down_applied_},
                 {"events_acknowledged_through", store_->log().acked()},
                 {"artifact_chunks", r.chunks},
                 {"artifacts_completed", r.completed.size()},
                 {"gap", gap}};
  Event e;
  e.time = clock_.Now();
  e.type = static_cast<uint8_t>(EventType::kBundleImported);
  e.message = "bundle " + h.id + " volume " + std::to_string(h.volume) + "/" +
              std::to_string(h.volumes) + ": " + std::to_string(r.applied) + " commands applied (" +
              std::to_string(refused) + " of them refused by this site's checks), " +
              std::to_string(r.duplicates) + " already applied, " + std::to_string(r.chunks) +
              " artifact chunks" + (gap.is_null() ? "" : ", gap " + gap.dump()) +
              (r.problem.empty() ? "" : ", stopped: " + r.problem);
  pending_.events.push_back(std::move(e));
  Flush();
  spdlog::info("agent.bundle_imported bundle={} volume={}/{} applied={} duplicates={} chunks={} gap={} problem=\"{}\"",
               h.id, h.volume, h.volumes, r.applied, r.duplicates, r.chunks,
               gap.is_null() ? "none" : gap.dump(), SafeText(r.problem));
  const std::string where = "bundle " + h.id + " volume " + std::to_string(h.volume) + ": ";
  if (!r.problem.empty()) {
    json err = Error(where + r.problem);
    err["import"] = result;
    return err;
  }
  if (r.gap) {
    json err = Error(where + "starts after a gap: this site has commands through " +
                         std::to_string(down_applied_) + "; commands " + std::to_string(r.gap->first) +
                         ".." + std::to_string(r.gap->second) +
                         " are missing (import the bundle that holds them, or export a newer one)",
                     "conflict");
    err["import"] = result;
    return err;
  }
  return {{"ok", true}, {"import", result}};
}

json Agent::ExportBundle(int fd) {
  if (config_.hub_key.empty()) {
    return Error("this agent has no --hub-key: a return bundle is sealed to the hub's key", "conflict");
  }
  Flush();  // what happened so far is in the log
  BundleHeader h;
  auto bytes = ExportUpVolume(store_->log(), down_applied_, keys_, config_.hub_key, config_.site,
                              MakeUlid(clock_.Now(), &rng_), clock_.Now(), &h);
  if (!bytes.ok()) return Error(bytes.status());
  if (Status s = WriteAll(fd, *bytes); !s.ok()) return Error(s);
  if (fsync(fd) != 0 && errno != EINVAL) {
    return Error(Status::IoError(std::string("sync the bundle: ") + strerror(errno)));
  }
  ++counters_.bundles_exported;
  spdlog::info("agent.bundle_exported bundle={} events={}..{} commands_applied_through={} bytes={}",
               h.id, h.first, h.last, down_applied_, bytes->size());
  return {{"ok", true},
          {"bundle",
           {{"id", h.id},
            {"site", h.site},
            {"events", {{"first", h.first}, {"last", h.last}}},
            {"commands_applied_through", down_applied_},
            {"bytes", bytes->size()}}}};
}

void Agent::ScanInbox() {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(config_.inbox_dir, ec)) {
    if (e.is_regular_file(ec)) files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  bool media = false;  // a volume for this site is in the directory (the media is there)
  for (const auto& path : files) {
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) continue;
    BundleReader peek(ReadFromFd(fd));
    const bool ours = peek.ReadHead().ok() && peek.header().kind == "down" &&
                      peek.header().to_key == keys_.public_z85;
    media = media || ours;
    const std::string key = ours ? peek.header().id + "/" + std::to_string(peek.header().volume) : "";
    // A volume still being copied onto the media fails its framing check: it is tried
    // again when its size or time changes, not marked done.
    struct stat st {};
    fstat(fd, &st);
    const std::string stamp = std::to_string(st.st_size) + "@" + std::to_string(st.st_mtim.tv_sec) +
                              "." + std::to_string(st.st_mtim.tv_nsec);
    if (!ours || inbox_seen_.count(key) || inbox_failed_[path.string()] == stamp) {
      close(fd);
      continue;
    }
    lseek(fd, 0, SEEK_SET);
    json r = ImportBundle(fd);
    close(fd);
    if (r.value("ok", false)) {
      inbox_seen_.insert(key);
      inbox_failed_.erase(path.string());
    } else {
      inbox_failed_[path.string()] = stamp;
    }
    spdlog::info("agent.inbox_import file={} ok={} error=\"{}\"", path.string(), r.value("ok", false),
                 r.contains("error") && r["error"].is_string() ? r["error"].get<std::string>() : "");
  }
  // The answer goes back on the same media, kept current while the media is there: one
  // file, rewritten whenever the log or the commands' watermark moved (runs started by
  // the import finish a moment later and their events go too).
  if (!media || config_.hub_key.empty()) return;
  const auto& log = store_->log();
  const std::pair<uint64_t, uint64_t> state = {log.head(), down_applied_};
  if (state == inbox_returned_) return;
  const std::string name = config_.inbox_dir + "/outpost-return-" + config_.site + ".bundle";
  const std::string tmp = name + ".partial";
  unlink(tmp.c_str());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    spdlog::warn("agent.inbox_return_failed file={} error=\"{}\"", tmp, strerror(errno));
    return;
  }
  json r = ExportBundle(fd);
  close(fd);
  if (!r.value("ok", false) || rename(tmp.c_str(), name.c_str()) != 0) {
    unlink(tmp.c_str());
    spdlog::warn("agent.inbox_return_failed file={}", name);
    return;
  }
  inbox_returned_ = state;
  spdlog::info("agent.inbox_return file={} bundle={} log_head={}", name,
               r["bundle"].value("id", ""), state.first);
}

}  // namespace outpost
