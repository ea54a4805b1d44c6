#include "site-agent/agent.h"

#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <grp.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fcntl.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <zmq.h>

#include "common/protocol/control.h"
#include "common/workflow/template.h"
#include "common/trust.h"
#include "common/ulid.h"
#include "site-agent/retention.h"

namespace outpost {

using json = nlohmann::json;

namespace {

json TimeJson(TimeMs t) { return t > 0 ? json(FormatTime(t)) : json(nullptr); }

}  // namespace

json RunViewToJson(const RunView& v) {
  json tasks = json::array();
  for (const auto& t : v.tasks) {
    json jt = {{"id", t.id},
               {"state", TaskStateName(t.task_state())},
               {"attempts", t.attempts},
               {"exit_code", t.attempts > 0 ? json(t.exit_code) : json(nullptr)},
               {"signal", t.signal},
               {"started", TimeJson(t.started)},
               {"finished", TimeJson(t.finished)},
               {"message", t.message},
               {"outputs", t.outputs}};
    if (t.task_state() == TaskState::kWaiting) jt["retry_at"] = TimeJson(t.retry_at);
    if (t.task_kind() == TaskKind::kInstance) jt["item"] = t.item;
    if (t.task_kind() == TaskKind::kCompensation) jt["compensates"] = t.parent;
    if (t.instances > 0) jt["instances"] = t.instances;
    tasks.push_back(std::move(jt));
  }
  return {{"id", v.run.id},
          {"workflow", v.run.workflow},
          {"hash", v.run.hash},
          {"state", RunStateName(v.run.run_state())},
          {"params", v.run.params},
          {"created", TimeJson(v.run.created)},
          {"finished", TimeJson(v.run.finished)},
          {"cancel_requested", v.run.cancel_requested},
          {"message", v.run.message},
          {"request", v.run.request},
          {"priority", v.run.priority},
          {"trigger", v.run.trigger},
          {"compensating", v.run.compensating && !IsFinal(v.run.run_state())},
          {"outcome", v.run.outcome},
          {"tasks", std::move(tasks)}};
}

Agent::Agent(const AgentConfig& config, const Clock& clock, uint64_t seed)
    : config_(config), clock_(clock), rng_(seed) {}

Agent::~Agent() {
  for (auto& [id, c] : clients_) {
    close(c.fd);
    for (int fd : c.fds) close(fd);
  }
  if (listen_fd_ >= 0) {
    close(listen_fd_);
    unlink(socket_path().c_str());
  }
  if (term_fd_ >= 0) close(term_fd_);
}

// The site's name is stored with its database at first start: a restart that forgets
// --site keeps the name (run ids, templates), and one that names another site is refused.
Status Agent::SettleSiteName() {
  constexpr char kKey[] = "meta/site_name";
  OUTPOST_ASSIGN_OR_RETURN(auto stored, store_->log().GetState(kKey));
  if (stored && *stored != config_.site) {
    if (config_.site_given) {
      return Status::FailedPrecondition(
          "the data directory " + config_.data_dir + " belongs to site '" + *stored +
          "', not '" + config_.site + "'; start with --site " + *stored +
          " or use another data directory");
    }
    config_.site = *stored;
    return Status::Ok();
  }
  if (!stored) {
    OUTPOST_ASSIGN_OR_RETURN(uint64_t head, store_->log().Append({}, {{kKey, config_.site}}));
    (void)head;
  }
  return Status::Ok();
}

Result<std::unique_ptr<Agent>> Agent::Open(const AgentConfig& config, const Clock& clock,
                                           uint64_t seed) {
  std::unique_ptr<Agent> a(new Agent(config, clock, seed));
  std::error_code ec;
  std::filesystem::create_directories(config.data_dir + "/outputs", ec);
  if (ec) return Status::IoError("create data dir " + config.data_dir + ": " + ec.message());
  chmod(config.data_dir.c_str(), 0700);

  EventLog::Options lo;
  lo.new_incarnation = a->rng_.Next();
  OUTPOST_ASSIGN_OR_RETURN(auto log, EventLog::Open(config.data_dir + "/db", lo));
  a->store_ = std::make_unique<AgentStore>(std::move(log));
  OUTPOST_RETURN_IF_ERROR(a->SettleSiteName());
  const AgentConfig& cfg = a->config_;
  EngineOptions eopts;
  eopts.max_parallel = cfg.max_parallel;
  eopts.queues = cfg.queues;
  eopts.kill_grace = cfg.kill_grace;
  eopts.site_name = cfg.site;
  eopts.site_labels = cfg.labels;
  eopts.open_secret = [agent = a.get()](const std::string& sealed) {
    return OpenSealed(sealed, agent->keys_.public_z85, agent->keys_.secret_z85);
  };
  eopts.artifact_path = [agent = a.get()](const std::string& digest) -> Result<std::string> {
    if (!agent->artifacts_) return Status::FailedPrecondition("the artifact cache is not open");
    return agent->artifacts_->Use(digest);
  };
  a->engine_ = std::make_unique<Engine>(clock, &a->rng_, eopts);
  Agent* self = a.get();
  a->scheduler_ = std::make_unique<Scheduler>(
      clock, [self] { return self->config_.site + "-" + MakeUlid(self->clock_.Now(), &self->rng_); });
  ProcessExecutor::Options eo;
  eo.output_cap = config.output_cap;
  eo.cgroup_root = CgroupRootFor(config);
  eo.pass_env = config.task_env;
  if (!config.task_user.empty()) {
    OUTPOST_ASSIGN_OR_RETURN(auto user, ProcessExecutor::LookupUser(config.task_user));
    eo.user = user;
    eo.task_root = config.task_dir.empty() ? config.data_dir + "/work" : config.task_dir;
    // The task user may pass through the data directory to its work and output files,
    // never list it or read anything else in it (db/ 0700, agent.key 0600, the socket
    // 0600 and checked by SO_PEERCRED).
    std::filesystem::create_directories(eo.task_root, ec);
    chmod(config.data_dir.c_str(), 0711);
    chmod((config.data_dir + "/outputs").c_str(), 0711);
    chmod((config.data_dir + "/db").c_str(), 0700);
    chmod(eo.task_root.c_str(), 0711);
    spdlog::info("agent.task_user user={} uid={} work={}", user.name, user.uid, eo.task_root);
  } else if (!config.task_dir.empty()) {
    eo.task_root = config.task_dir;
    std::filesystem::create_directories(eo.task_root, ec);
  }
  if (!config.control_group.empty()) {
    struct group gr {}, *found = nullptr;
    std::vector<char> buf(16384);
    if (getgrnam_r(config.control_group.c_str(), &gr, buf.data(), buf.size(), &found) != 0 ||
        found == nullptr) {
      return Status::InvalidArgument("control group '" + config.control_group + "' does not exist");
    }
    a->control_gid_ = gr.gr_gid;
  }
  auto executor = ProcessExecutor::Create(eo);
  if (!executor.ok() && !eo.cgroup_root.empty() && config.cgroup == "auto") {
    spdlog::warn("agent.cgroup_unusable dir={} error=\"{}\"; attempts use process groups",
                 eo.cgroup_root, executor.status().message());
    eo.cgroup_root.clear();
    executor = ProcessExecutor::Create(eo);
  }
  OUTPOST_ASSIGN_OR_RETURN(a->executor_, std::move(executor));
  a->engine_->set_isolation(a->executor_->isolation());
  spdlog::info("agent.isolation mode=\"{}\"{}", a->executor_->isolation(),
               eo.cgroup_root.empty() ? "" : " cgroup=" + eo.cgroup_root);

  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  a->term_fd_ = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (a->term_fd_ < 0) return Status::IoError(std::string("signalfd: ") + strerror(errno));

  // Resume unfinished runs. Process groups left running by a killed agent are killed
  // first, so an interrupted attempt never runs twice at once.
  OUTPOST_ASSIGN_OR_RETURN(auto unfinished, a->store_->LoadUnfinished());
  for (auto& v : unfinished) {
    for (const auto& t : v.tasks) {
      if (t.task_state() != TaskState::kRunning) continue;
      if (t.pid > 0 && KillOrphanGroup(t.pid, v.run.id, t.id, t.attempts)) {
        ++a->counters_.orphans_killed;
        spdlog::warn("agent.orphan_killed run={} task={} attempt={} pgid={}", v.run.id, t.id,
                     t.attempts, t.pid);
      } else if (t.pid == 0) {
        // Started, but the pid's group commit never came: found by its environment.
        const int n = KillOrphanAttempt(v.run.id, t.id, t.attempts);
        a->counters_.orphans_killed += static_cast<uint64_t>(n);
        if (n > 0) {
          spdlog::warn("agent.orphan_killed run={} task={} attempt={} pgid=unrecorded groups={}",
                       v.run.id, t.id, t.attempts, n);
        }
      }
    }
    const std::string id = v.run.id;
    Status s = a->engine_->Restore(std::move(v.run), std::move(v.tasks), &a->pending_);
    if (!s.ok()) {
      spdlog::error("agent.restore_failed run={} error=\"{}\"", id, s.ToString());
    } else {
      spdlog::info("agent.run_restored run={}", id);
    }
  }
  // What escaped the orphans' process groups is still in their attempts' cgroups (the
  // groups just killed may still be dying there too: logged, not counted again).
  if (size_t swept = a->executor_->SweepLeftoverCgroups(); swept > 0) {
    spdlog::info("agent.orphan_cgroups_swept count={}", swept);
  }
  // Output files left by attempts that were running when the agent died belong to no
  // attempt that can still finish (resumed attempts get new numbers; the orphans that
  // could write them were killed above): sweep them.
  for (const auto& entry : std::filesystem::directory_iterator(config.data_dir + "/outputs", ec)) {
    std::filesystem::remove(entry.path(), ec);
  }
  OUTPOST_ASSIGN_OR_RETURN(a->parser_, WorkflowParser::Create());
  a->LoadWorkflowDir();
  a->SyncSchedules();
  OUTPOST_ASSIGN_OR_RETURN(a->listen_fd_, ListenUnix(a->socket_path()));
  if (a->control_gid_) {
    // The control group may connect; SO_PEERCRED still checks every connection.
    if (chown(a->socket_path().c_str(), static_cast<uid_t>(-1), *a->control_gid_) != 0 ||
        chmod(a->socket_path().c_str(), 0660) != 0) {
      return Status::IoError("cannot give the control socket to group '" + cfg.control_group +
                             "': " + strerror(errno));
    }
  }
  OUTPOST_RETURN_IF_ERROR(a->OpenSync());
  OUTPOST_RETURN_IF_ERROR(a->OpenTrust());
  OUTPOST_RETURN_IF_ERROR(a->OpenArtifacts());
  OUTPOST_RETURN_IF_ERROR(a->OpenMetrics());
  a->ReleaseStartupPages();
  spdlog::info("agent.started site={} data_dir={} incarnation={:016x} log_head={} restored={}",
               cfg.site, cfg.data_dir, a->store_->log().incarnation(),
               a->store_->log().head(), unfinished.size());
  return a;
}

// Start-up (loading RocksDB, opening the database, restoring runs) touches several MB of
// library code and read-only data that an idle agent never uses again; on a gateway those
// pages are memory. Tell the kernel it may reclaim them now: clean, file-backed, read-only
// mappings only, so nothing is lost — a page needed later is read back from the page
// cache or the file. Kernels before 5.4 lack MADV_PAGEOUT; then nothing happens.
void Agent::ReleaseStartupPages() {
#ifdef MADV_PAGEOUT
  FILE* maps = fopen("/proc/self/maps", "re");
  if (maps == nullptr) return;
  char line[512];
  size_t released = 0;
  while (fgets(line, sizeof line, maps) != nullptr) {
    unsigned long lo = 0, hi = 0;
    char perms[5] = {0};
    unsigned long offset = 0, inode = 0;
    char dev[16] = {0};
    if (sscanf(line, "%lx-%lx %4s %lx %15s %lu", &lo, &hi, perms, &offset, dev, &inode) != 6) continue;
    // Read-only (r--p or r-xp) mappings of a file: code and constants, never written.
    if (inode == 0 || perms[0] != 'r' || perms[1] != '-' || perms[3] != 'p') continue;
    if (madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_PAGEOUT) == 0) released += hi - lo;
  }
  fclose(maps);
  spdlog::debug("agent.startup_pages_released bytes={}", released);
#endif
}

Status Agent::Run() {
  bool stop = false;
  Flush();  // restored runs
  while (!stop) {
    // zmq_poll takes both plain fds and ZeroMQ sockets.
    std::vector<zmq_pollitem_t> items;
    auto add_fd = [&items](int fd, short events) { items.push_back({nullptr, fd, events, 0}); };
    add_fd(term_fd_, ZMQ_POLLIN);
    add_fd(executor_->signal_fd(), ZMQ_POLLIN);
    add_fd(listen_fd_, ZMQ_POLLIN);
    add_fd(parser_->wake_fd(), ZMQ_POLLIN);
    const size_t pipes_begin = items.size();
    for (int fd : executor_->pipe_fds()) add_fd(fd, ZMQ_POLLIN);
    const size_t clients_begin = items.size();
    std::vector<uint64_t> client_ids;
    for (const auto& [id, c] : clients_) {
      add_fd(c.fd, static_cast<short>(ZMQ_POLLIN | (c.out.empty() ? 0 : ZMQ_POLLOUT)));
      client_ids.push_back(id);
    }
    const size_t hub_begin = items.size();
    if (hub_) {
      items.push_back({hub_->socket(), 0, ZMQ_POLLIN, 0});
      items.push_back({hub_->monitor(), 0, ZMQ_POLLIN, 0});
    }
    if (http_) add_fd(http_->fd(), ZMQ_POLLIN);  // last; served every round, below
    const TimeMs now = clock_.Now();
    TimeMs wake = engine_->NextDeadline();
    auto earliest = [&wake](TimeMs t) {
      if (t > 0 && (wake == 0 || t < wake)) wake = t;
    };
    earliest(scheduler_->NextDeadline());
    if (config_.retain_output > 0 || config_.output_budget > 0) earliest(trim_at_);
    if (!pending_.empty() || !after_commit_.empty()) {
      earliest(commit_retry_at_ > now ? commit_retry_at_ : now);
    }
    if (!spawned_.empty()) earliest(std::max(spawned_due_, commit_retry_at_));
    if (session_) {
      earliest(session_->NextDeadline());
      earliest(reconnect_at_);
    }
    earliest(housekeeping_at_);
    if (!config_.metrics_file.empty()) earliest(metrics_file_at_);
    if (health_at_ > 0) earliest(health_at_);
    if (!fetch_digest_.empty()) earliest(now + 1000);  // a stalled transfer is asked again
    long timeout = -1;
    if (wake > 0) timeout = static_cast<long>(std::clamp<TimeMs>(wake - now, 0, 60'000));
    int rc = zmq_poll(items.data(), static_cast<int>(items.size()), timeout);
    if (rc < 0 && zmq_errno() != EINTR) {
      return Status::IoError(std::string("zmq_poll: ") + zmq_strerror(zmq_errno()));
    }
    if (rc > 0) {
      if (items[0].revents) HandleSignals(&stop);
      if (items[1].revents) executor_->OnSignalReadable();
      for (size_t i = pipes_begin; i < clients_begin; ++i) {
        if (items[i].revents) executor_->OnPipeReadable(items[i].fd);
      }
      if (items[2].revents) AcceptClients();
      if (items[3].revents) OnWorkflowsParsed();
      for (size_t i = clients_begin; i < hub_begin; ++i) {
        const uint64_t id = client_ids[i - clients_begin];
        if (items[i].revents & ZMQ_POLLOUT) WriteClient(id);
        if (items[i].revents & (ZMQ_POLLIN | ZMQ_POLLERR)) ReadClient(id);
      }
    }
    std::vector<std::pair<AttemptKey, ExitInfo>> exits;
    executor_->TakeExits(&exits);
    for (auto& [key, info] : exits) {
      CollectOutputs(key, &info);
      engine_->OnExit(key, info, &pending_);
    }
    engine_->Tick(&pending_);
    scheduler_->Tick(*engine_, &pending_);
    if ((config_.retain_output > 0 || config_.output_budget > 0) && clock_.Now() >= trim_at_) {
      TrimOutputs();
    }
    Flush();
    if (session_) {
      ServeHub();
      SyncTick();
    }
    ArtifactsTick();
    MetricsTick();
    if (http_) http_->Serve([this](const HttpRequest& r) { return OnHttp(r); });
    Flush();  // events the artifacts, bundles and health summary recorded
  }
  executor_->KillAll(SIGTERM);
  spdlog::info("agent.stopped running_attempts_killed={}", executor_->running());
  return Status::Ok();
}

std::string Agent::OutputFile(const AttemptKey& k) const {
  // Run and task ids are names without '/', so this stays inside outputs/.
  return config_.data_dir + "/outputs/" + k.run + "." + k.task + "." + std::to_string(k.attempt);
}

void Agent::CollectOutputs(const AttemptKey& k, ExitInfo* info) {
  const std::string path = OutputFile(k);
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return;  // published nothing
  std::string text;
  char buf[8192];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0 && text.size() <= 64 * 1024) {
    text.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  unlink(path.c_str());
  auto parsed = ParseOutputs(text);
  if (parsed.ok()) {
    info->outputs = std::move(parsed).value();
  } else {
    info->output_error = parsed.status().message();
    spdlog::warn("agent.outputs_invalid run={} task={} attempt={} error=\"{}\"", k.run, k.task,
                 k.attempt, info->output_error);
  }
}

void Agent::LoadWorkflowDir() {
  if (config_.workflow_dir.empty()) return;
  std::error_code ec;
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(config_.workflow_dir, ec)) {
    const auto ext = entry.path().extension();
    if (entry.is_regular_file(ec) && (ext == ".yaml" || ext == ".yml")) files.push_back(entry.path());
  }
  if (ec) {
    ++counters_.workflow_files_invalid;
    spdlog::error("agent.workflow_dir_unreadable dir={} error=\"{}\"", config_.workflow_dir, ec.message());
    return;
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    auto def = LoadWorkflowFile(f);
    if (!def.ok()) {
      ++counters_.workflow_files_invalid;
      spdlog::error("agent.workflow_invalid file={} error=\"{}\"", f, def.status().message());
      continue;
    }
    if (local_defs_.count(def->name)) {
      ++counters_.workflow_files_invalid;
      spdlog::error("agent.workflow_duplicate file={} workflow={} (another file has this name)", f,
                    def->name);
      continue;
    }
    spdlog::info("agent.workflow_loaded file={} workflow={} hash={}{}", f, def->name, def->hash,
                 def->schedule ? " schedule=\"" + def->schedule->cron + "\"" : "");
    const std::string name = def->name;
    local_defs_[name] = std::make_shared<const WorkflowDef>(std::move(def).value());
  }
}

std::map<std::string, std::shared_ptr<const WorkflowDef>> Agent::KnownWorkflows() const {
  auto all = local_defs_;
  // A definition the hub placed wins over a local file of the same name.
  store_->log()
      .ScanState("wf/",
                 [&](std::string_view, std::string_view v) {
                   Command c;
                   if (!DecodeCommand(v, &c).ok()) return;
                   // Validated when it was placed: found in the parser's cache under
                   // the origin the command used, parsed again only when it was dropped.
                   auto def = parser_->GetNow(c.source, "hub:" + c.workflow);
                   if (!def.ok()) return;
                   all[(*def)->name] = *def;
                 })
      .IgnoreError();  // a failed scan leaves the local files; logged by the next query
  return all;
}

void Agent::SyncSchedules() {
  auto all = KnownWorkflows();
  // The artifacts the known workflows name, kept for the fetcher and the cache budget.
  needed_artifacts_.clear();
  for (const auto& [name, def] : all) {
    for (const auto& [art, digest] : def->artifacts) needed_artifacts_.insert(digest);
  }
  for (auto it = scheduled_hash_.begin(); it != scheduled_hash_.end();) {
    auto d = all.find(it->first);
    if (d == all.end() || !d->second->schedule) {
      spdlog::info("schedule.removed workflow={}", it->first);
      scheduler_->Remove(it->first, &pending_);
      it = scheduled_hash_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& [name, def] : all) {
    if (!def->schedule) continue;
    if (auto h = scheduled_hash_.find(name); h != scheduled_hash_.end() && h->second == def->hash) continue;
    auto tz = TimeZone::Load(def->schedule->timezone);
    if (!tz.ok()) {
      ++counters_.schedule_errors;
      spdlog::error("schedule.invalid workflow={} error=\"{}\"", name, tz.status().message());
      Event e;
      e.time = clock_.Now();
      e.type = static_cast<uint8_t>(EventType::kScheduleSkipped);
      e.workflow = name;
      e.message = "schedule not active: " + tz.status().message();
      pending_.events.push_back(std::move(e));
      continue;
    }
    std::optional<ScheduleState> state;
    if (auto raw = store_->log().GetState(ScheduleKey(name)); raw.ok() && *raw) {
      ScheduleState st;
      if (Decode(**raw, &st).ok()) state = std::move(st);
    }
    Status s = scheduler_->Set(def, std::move(tz).value(), state, &pending_);
    if (!s.ok()) {
      ++counters_.schedule_errors;
      spdlog::error("schedule.invalid workflow={} error=\"{}\"", name, s.message());
      continue;
    }
    scheduled_hash_[name] = def->hash;
    spdlog::info("schedule.active workflow={} cron=\"{}\" timezone={} catch_up={} overlap={}", name,
                 def->schedule->cron, def->schedule->timezone, CatchUpName(def->schedule->catch_up),
                 OverlapName(def->schedule->overlap));
  }
}

json Agent::TrimOutputs() {
  const TimeMs now = clock_.Now();
  trim_at_ = now + 60'000;
  // Finished runs with the keys and bytes of their stored output.
  std::vector<StoredOutput> runs;
  std::map<std::string, std::vector<std::string>> keys;
  Status s = store_->log().ScanState("run/", [&](std::string_view, std::string_view v) {
    RunRecord r;
    if (Decode(v, &r).ok() && IsFinal(r.run_state())) runs.push_back({r.id, r.finished, 0});
  });
  for (auto& f : runs) {
    if (!s.ok()) break;
    auto& k = keys[f.run];
    s = store_->log().ScanState("out/" + f.run + "/", [&](std::string_view key, std::string_view v) {
      f.bytes += key.size() + v.size();
      k.emplace_back(key);
    });
  }
  if (!s.ok()) {
    spdlog::error("retention.scan_failed error=\"{}\"", s.ToString());
    return {{"error", s.ToString()}};
  }
  const TrimPlan plan = PlanTrim(std::move(runs), now, config_.retain_output, config_.output_budget);
  uint64_t n_keys = 0;
  for (const auto& item : plan.trim) {
    for (const auto& k : keys[item.run]) pending_.state_writes.emplace_back(k, std::nullopt);
    n_keys += keys[item.run].size();
    pending_.state_writes.emplace_back("trim/" + item.run, item.reason + " at " + FormatTime(now));
  }
  output_bytes_ = plan.kept;
  const json result = {{"runs", plan.trim.size()}, {"outputs", n_keys}, {"bytes", plan.bytes},
                       {"kept_bytes", plan.kept}};
  if (plan.trim.empty()) return result;
  counters_.outputs_trimmed += n_keys;
  counters_.output_bytes_trimmed += plan.bytes;
  Event e;
  e.time = now;
  e.type = static_cast<uint8_t>(EventType::kOutputTrimmed);
  e.message = "removed " + std::to_string(n_keys) + " output(s) of " + std::to_string(plan.trim.size()) +
              " finished run(s), " + std::to_string(plan.bytes) + " bytes; " + std::to_string(plan.kept) +
              " bytes of output kept; event log and state " + std::to_string(store_->log().ApproximateSize()) +
              " bytes on disk";
  spdlog::info("retention.trimmed runs={} outputs={} bytes={} kept_bytes={}", plan.trim.size(), n_keys,
               plan.bytes, plan.kept);
  pending_.events.push_back(std::move(e));
  return result;
}

void Agent::HandleSignals(bool* stop) {
  signalfd_siginfo info;
  while (read(term_fd_, &info, sizeof info) == sizeof info) {
    spdlog::info("agent.signal signo={}", info.ssi_signo);
    *stop = true;
  }
}

void Agent::Flush() {
  if (pending_.empty() && after_commit_.empty()) {
    // Only pids to write: they wait for the next step's commit, or their delay.
    if (spawned_.empty() || clock_.Now() < spawned_due_) return;
  }
  if (commit_retry_at_ > clock_.Now()) return;
  CommitPending({}).IgnoreError();  // logged, counted and retried inside
}

// New work is refused while the disk is full; what was asked before waits in memory and
// is written (then started) as soon as there is room again.
void Agent::SetDiskFull(bool full) {
  if (full == disk_full_) return;
  disk_full_ = full;
  if (full) {
    spdlog::error("agent.disk_full data_dir={} (new runs are refused; held work is retried "
                  "every second)",
                  config_.data_dir);
  } else {
    spdlog::info("agent.disk_space_back data_dir={}", config_.data_dir);
  }
}

Status Agent::CommitPending(const std::vector<StateWrite>& extra) {
  // Group commit: the pids recorded since the last commit ride with this one.
  pending_.dirty_runs.insert(spawned_.dirty_runs.begin(), spawned_.dirty_runs.end());
  pending_.dirty_tasks.insert(spawned_.dirty_tasks.begin(), spawned_.dirty_tasks.end());
  spawned_ = Effects();
  const auto t0 = std::chrono::steady_clock::now();
  Status s = store_->Commit(pending_, *engine_, extra);
  const double commit_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  SetDiskFull(s.code() == Code::kResourceExhausted);
  if (!s.ok()) {
    ++counters_.commit_failures;
    commit_retry_at_ = clock_.Now() + 1000;
    spdlog::error("agent.commit_failed error=\"{}\" retry_in_ms=1000 held_events={}",
                  s.ToString(), pending_.events.size());
    return s;
  }
  commit_retry_at_ = 0;
  Effects done = std::move(pending_);
  pending_ = Effects();
  NoteCommitted(done, commit_s);
  for (const auto& k : done.kills) executor_->Kill(k.key, k.signal);
  for (auto sp : done.starts) {
    // Each attempt gets its own file to publish key=value outputs into.
    const std::string out = OutputFile(sp.key);
    unlink(out.c_str());
    if (executor_->task_user()) {
      // Made here for the task user: it can write this file and nothing else in outputs/.
      int ofd = open(out.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
      if (ofd >= 0) {
        if (fchown(ofd, executor_->task_user()->uid, executor_->task_user()->gid) != 0) {
          spdlog::warn("agent.output_chown_failed file={} error=\"{}\"", out, strerror(errno));
        }
        close(ofd);
      }
    }
    sp.env.emplace_back("OUTPOST_OUTPUT", out);
    auto pid = executor_->Start(sp);
    if (pid.ok()) {
      // Not a commit of its own: written with the next one (AgentConfig::pid_write_delay).
      if (spawned_.empty()) spawned_due_ = clock_.Now() + config_.pid_write_delay;
      engine_->OnSpawned(sp.key, *pid, &spawned_);
    } else {
      ++counters_.spawn_failures;
      spdlog::warn("agent.spawn_failed run={} task={} error=\"{}\"", sp.key.run, sp.key.task,
                   pid.status().message());
      ExitInfo ex;
      ex.exit_code = -1;
      ex.spawn_error = pid.status().message();
      engine_->OnExit(sp.key, ex, &pending_);
    }
  }
  for (auto& [client, reply] : after_commit_) Reply(client, reply);
  after_commit_.clear();
  for (const auto& id : done.finished_runs) {
    const RunRecord* r = engine_->FindRun(id);
    spdlog::info("run.finished run={} workflow={} state={}", id, r ? r->workflow : "?",
                 r ? RunStateName(r->run_state()) : "?");
    engine_->Forget(id);
    executor_->RemoveRunDir(id);
    auto w = waiters_.find(id);
    if (w == waiters_.end()) continue;
    auto view = store_->GetRun(id);
    for (uint64_t c : w->second) {
      if (view.ok() && *view) {
        Reply(c, {{"ok", true}, {"run", RunViewToJson(**view)}});
      } else {
        Reply(c, {{"ok", false}, {"error", "run " + id + " could not be read back"}});
      }
    }
    waiters_.erase(w);
  }
  if (!done.events.empty()) log_grew_ = true;  // SyncTick ships it
  return Status::Ok();
}

// The cgroup v2 directory attempts get their cgroups under: --cgroup DIR as given; "auto":
// this agent's own cgroup (from /proc/self/cgroup, under the cgroup2 mount) when it may
// make cgroups there, in a directory named after its data directory so agents sharing a
// cgroup never touch each other's attempts; "" for process groups only.
std::string Agent::CgroupRootFor(const AgentConfig& config) {
  if (config.cgroup == "off") return "";
  if (config.cgroup != "auto") return config.cgroup;
  const std::string base = ProcessExecutor::OwnCgroup();
  if (base.empty()) return "";
  std::string canonical = config.data_dir;
  std::error_code ec;
  auto abs = std::filesystem::weakly_canonical(config.data_dir, ec);
  if (!ec) canonical = abs.string();
  return base + "/outpost-agent-" + ContentDigest(canonical).substr(0, 12);
}

// Who is on the other end of the control socket (SO_PEERCRED): root, the agent's own
// user and members of the control group may use it; anyone else (a task's user above all)
// is refused. Returns "" or a log line's worth of why.
std::string Agent::PeerRefused(int fd) const {
  struct ucred cred {};
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return std::string("reason=no_peer_credentials error=\"") + strerror(errno) + "\"";
  }
  if (executor_->task_user() && cred.uid == executor_->task_user()->uid) {
    return "reason=task_user uid=" + std::to_string(cred.uid) + " pid=" + std::to_string(cred.pid);
  }
  if (cred.uid == 0 || cred.uid == geteuid()) return "";
  if (control_gid_) {
    if (cred.gid == *control_gid_) return "";
    // Supplementary groups of the peer process.
    std::ifstream status("/proc/" + std::to_string(cred.pid) + "/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("Groups:", 0) != 0) continue;
      std::istringstream groups(line.substr(7));
      gid_t g;
      while (groups >> g) {
        if (g == *control_gid_) return "";
      }
    }
  }
  return "reason=not_allowed uid=" + std::to_string(cred.uid) + " pid=" + std::to_string(cred.pid);
}

void Agent::AcceptClients() {
  for (;;) {
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    if (std::string why = PeerRefused(fd); !why.empty()) {
      ++counters_.control_peers_refused;
      spdlog::warn("control.refused {}", why);
      const std::string reply =
          "{\"ok\":false,\"code\":\"forbidden\",\"error\":\"this user may not use the agent's "
          "control socket (root, the agent's user or the control group only)\"}\n";
      ssize_t ignored = write(fd, reply.data(), reply.size());
      (void)ignored;
      close(fd);
      continue;
    }
    if (clients_.size() >= 256) {
      spdlog::warn("control.refused reason=too_many_clients");
      close(fd);
      continue;
    }
    clients_[next_client_++] = Client{fd, {}, {}, false, {}};
  }
}

void Agent::ReadClient(uint64_t id) {
  auto it = clients_.find(id);
  if (it == clients_.end()) return;
  char buf[65536];
  for (;;) {
    // A request may come with a descriptor (bundle.import / bundle.export, SCM_RIGHTS): the
    // client opened the file with its own rights, so the agent never opens a path it names.
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
    iovec iov{buf, sizeof buf};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = recvmsg(it->second.fd, &msg, MSG_CMSG_CLOEXEC);
    if (n > 0) {
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t k = 0; k < count; ++k) {
          int fd;
          memcpy(&fd, CMSG_DATA(c) + k * sizeof(int), sizeof fd);
          if (it->second.fds.size() < 2) {
            it->second.fds.push_back(fd);
          } else {
            close(fd);  // more than a request uses: refused by closing
          }
        }
      }
      it->second.in.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    close(it->second.fd);  // EOF or error: the client is gone
    for (int fd : it->second.fds) close(fd);
    clients_.erase(it);
    return;
  }
  // A line longer than kMaxControlLine is refused once, whole: its bytes are dropped up to
  // its newline (however they arrive), and the next line is a new request.
  auto too_long = [this, id] {
    ++counters_.bad_requests;
    Reply(id, {{"ok", false},
               {"error", "request longer than the control line limit (" +
                             std::to_string(kMaxControlLine) + " bytes)"},
               {"code", "invalid"}});
  };
  Client& c = it->second;
  size_t nl;
  while ((nl = c.in.find('\n')) != std::string::npos) {
    const bool skip = c.discarding || nl > kMaxControlLine;
    std::string line = skip ? std::string() : c.in.substr(0, nl);
    c.in.erase(0, nl + 1);
    if (skip) {
      if (!c.discarding) too_long();
      c.discarding = false;
      continue;
    }
    HandleRequest(id, line);
    if (!clients_.count(id)) return;
  }
  auto again = clients_.find(id);
  if (again == clients_.end()) return;
  if (again->second.in.size() > kMaxControlLine) {
    if (!again->second.discarding) too_long();
    again->second.discarding = true;
    again->second.in.clear();
  }
}

void Agent::WriteClient(uint64_t id) {
  auto it = clients_.find(id);
  if (it == clients_.end()) return;
  auto& c = it->second;
  while (!c.out.empty()) {
    ssize_t n = send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
    if (n > 0) {
      c.out.erase(0, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    close(c.fd);
    for (int fd : c.fds) close(fd);
    clients_.erase(it);
    return;
  }
}

void Agent::Reply(uint64_t client, const json& j) {
  auto it = clients_.find(client);
  if (it == clients_.end()) return;
  it->second.out += j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  WriteClient(client);
}

}  // namespace outpost
