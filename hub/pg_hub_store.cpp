#include "hub/pg_hub_store.h"

#include "common/text.h"

#include <libpq-fe.h>
#include <spdlog/spdlog.h>
#include <poll.h>

#include <chrono>
#include <cstring>
#include <map>
#include <set>

namespace outpost {

// A PGresult, cleared when dropped.
class PgResult {
 public:
  explicit PgResult(PGresult* r) : r_(r, &PQclear) {}
  PGresult* get() const { return r_.get(); }
  int rows() const { return PQntuples(r_.get()); }
  std::string bytes(int row, int col) const {
    return std::string(PQgetvalue(r_.get(), row, col),
                       static_cast<size_t>(PQgetlength(r_.get(), row, col)));
  }
  // An int8 column in binary format.
  uint64_t u64(int row, int col) const {
    if (PQgetlength(r_.get(), row, col) != 8) return 0;
    return DecodeU64(std::string_view(PQgetvalue(r_.get(), row, col), 8));
  }

 private:
  std::unique_ptr<PGresult, void (*)(PGresult*)> r_;
};

namespace {

std::string I8(uint64_t v) { return EncodeU64(v); }
// Sequence numbers beyond int8's range (kWholeStream) are clamped: no stream reaches it.
std::string Seq(uint64_t v) { return EncodeU64(std::min<uint64_t>(v, INT64_MAX)); }

// libpq's messages on one line (they may hold newlines and tabs).
std::string OneLine(std::string m) {
  for (char& ch : m) {
    if (ch == '\n' || ch == '\t' || ch == '\r') ch = ' ';
  }
  while (!m.empty() && m.back() == ' ') m.pop_back();
  return m;
}

std::string ConnError(PGconn* c) { return OneLine(c ? PQerrorMessage(c) : "out of memory"); }

// Notices and warnings from libpq and the server go to the hub's log, not raw to stderr.
void LogNotice(void*, const char* message) {
  spdlog::warn("hub.store_notice message=\"{}\"", OneLine(message ? message : ""));
}

constexpr char kSchemaSql[] = R"(
CREATE TABLE IF NOT EXISTS sites (name bytea PRIMARY KEY, rev int8 NOT NULL, body bytea NOT NULL);
CREATE TABLE IF NOT EXISTS up (site bytea, stream int8, seq int8, body bytea NOT NULL,
                               PRIMARY KEY (site, stream, seq));
CREATE TABLE IF NOT EXISTS down (site bytea, stream int8, seq int8, body bytea NOT NULL,
                                 PRIMARY KEY (site, stream, seq));
CREATE TABLE IF NOT EXISTS runs (id bytea PRIMARY KEY, site bytea NOT NULL, tkey bytea NOT NULL,
                                 state text NOT NULL, rev int8 NOT NULL, body bytea NOT NULL);
CREATE INDEX IF NOT EXISTS runs_by_time ON runs (tkey);
CREATE INDEX IF NOT EXISTS runs_by_site ON runs (site, id);
CREATE TABLE IF NOT EXISTS outputs (run bytea, task bytea, body bytea NOT NULL,
                                    PRIMARY KEY (run, task));
CREATE TABLE IF NOT EXISTS defs (name bytea PRIMARY KEY, body bytea NOT NULL);
CREATE TABLE IF NOT EXISTS requests (id bytea PRIMARY KEY, body bytea NOT NULL);
CREATE TABLE IF NOT EXISTS settings (key bytea PRIMARY KEY, body bytea NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (digest bytea PRIMARY KEY, body bytea NOT NULL);
CREATE TABLE IF NOT EXISTS artifacts (digest bytea PRIMARY KEY, body bytea NOT NULL);
CREATE TABLE IF NOT EXISTS down_heads (site bytea, stream int8, head int8 NOT NULL,
                                       PRIMARY KEY (site, stream));
CREATE TABLE IF NOT EXISTS audit (n bigserial PRIMARY KEY, seq int8 NOT NULL, body bytea NOT NULL);
)";

// Rows per multi-row insert of stream entries (4 parameters each; libpq allows 65,535).
constexpr size_t kRowsPerInsert = 1000;

}  // namespace

Status PgHubStore::CheckSchemaName(const std::string& s) {
  bool ok = !s.empty() && s.size() <= 48 && s[0] >= 'a' && s[0] <= 'z';
  for (char c : s) ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_');
  if (!ok) {
    return Status::InvalidArgument("PostgreSQL schema name '" + SafeText(s, 64) +
                                   "': 1-48 characters, a lower-case letter first, then "
                                   "lower-case letters, digits and '_'");
  }
  if (s.rfind("pg_", 0) == 0 || s == "information_schema") {
    return Status::InvalidArgument("PostgreSQL schema name '" + s +
                                   "' is PostgreSQL's own; choose another (default: outpost)");
  }
  return Status::Ok();
}

PgHubStore::~PgHubStore() {
  if (conn_) PQfinish(conn_);
}

Result<std::unique_ptr<PgHubStore>> PgHubStore::Open(const std::string& conninfo,
                                                     const Options& options) {
  if (Status v = CheckSchemaName(options.schema); !v.ok()) return v;
  std::unique_ptr<PgHubStore> s(new PgHubStore());
  s->schema_ = options.schema;
  s->channel_ = "outpost_" + options.schema;
  s->conn_ = PQconnectdb(conninfo.c_str());
  if (!s->conn_ || PQstatus(s->conn_) != CONNECTION_OK) {
    return Status::Unavailable("connect to PostgreSQL: " + ConnError(s->conn_));
  }
  PQsetNoticeProcessor(s->conn_, &LogNotice, nullptr);
  // Durable means durable: the hub acknowledges a batch only after this commit.
  OUTPOST_RETURN_IF_ERROR(s->ExecAll(
      "SET synchronous_commit TO on; SET client_min_messages TO warning; "
      "BEGIN; SELECT pg_advisory_xact_lock(7473690); CREATE SCHEMA IF NOT EXISTS " +
      s->schema_ + "; SET search_path TO " + s->schema_ + "; " + kSchemaSql + " COMMIT; LISTEN " +
      s->channel_ + ";"));
  s->backend_pid_ = PQbackendPID(s->conn_);
  OUTPOST_ASSIGN_OR_RETURN(auto head,
                           s->Exec("SELECT coalesce(max(seq), 0)::int8 FROM audit", {}));
  if (head.rows() == 1) s->audit_head_ = head.u64(0, 0);
  return s;
}

Status PgHubStore::ExecAll(const std::string& sql) const {
  PgResult r(PQexec(conn_, sql.c_str()));
  const auto st = PQresultStatus(r.get());
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    const std::string why = ConnError(conn_);
    PgResult rb(PQexec(conn_, "ROLLBACK"));
    return Status::Unavailable("PostgreSQL: " + why);
  }
  return Status::Ok();
}

bool PgHubStore::Reconnect() const {
  PQreset(conn_);
  if (PQstatus(conn_) != CONNECTION_OK ||
      !ExecAll("SET synchronous_commit TO on; SET search_path TO " + schema_ + "; LISTEN " +
               channel_ + ";")
           .ok()) {
    return false;
  }
  backend_pid_ = PQbackendPID(conn_);
  lost_changes_ = true;  // notifications may have been missed meanwhile
  return true;
}

Result<PgResult> PgHubStore::Exec(const std::string& sql, const std::vector<Param>& params) const {
  for (int attempt = 0;; ++attempt) {
    std::vector<const char*> values;
    std::vector<int> lengths, formats;
    for (const auto& p : params) {
      values.push_back(p.data.data());
      lengths.push_back(static_cast<int>(p.data.size()));
      formats.push_back(1);
    }
    PgResult r(PQexecParams(conn_, sql.c_str(), static_cast<int>(params.size()), nullptr,
                            values.data(), lengths.data(), formats.data(), 1));
    const auto st = PQresultStatus(r.get());
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return r;
    // A lost connection is made again once (the schema and LISTEN are per session).
    if (PQstatus(conn_) == CONNECTION_BAD && attempt == 0 && Reconnect()) continue;
    const char* state = PQresultErrorField(r.get(), PG_DIAG_SQLSTATE);
    const std::string code = state ? state : "";
    // 40001 serialization failure, 40P01 deadlock, 23505 unique violation: a concurrent
    // writer; the caller reads again and retries.
    if (code == "40001" || code == "40P01" || code == "23505") {
      return Status::Aborted("PostgreSQL: " + ConnError(conn_));
    }
    return Status::Unavailable("PostgreSQL: " + ConnError(conn_));
  }
}

int PgHubStore::changes_fd() const { return conn_ ? PQsocket(conn_) : -1; }

Status PgHubStore::TakeChanges(std::vector<std::string>* out) {
  if (lost_changes_) {
    out->push_back("*");
    lost_changes_ = false;
  }
  if (PQconsumeInput(conn_) == 0) {
    // The connection is gone: the next statement connects again.
    lost_changes_ = true;
    return Status::Unavailable("PostgreSQL notifications: " + ConnError(conn_));
  }
  std::set<std::string> seen;
  while (PGnotify* n = PQnotifies(conn_)) {
    if (n->be_pid != backend_pid_) {
      // One notification carries the names of one transaction's changes, '\n' apart.
      std::string_view p(n->extra);
      while (!p.empty()) {
        const size_t nl = p.find('\n');
        std::string one(p.substr(0, nl));
        if (!one.empty() && seen.insert(one).second) out->push_back(std::move(one));
        p = nl == std::string_view::npos ? std::string_view() : p.substr(nl + 1);
      }
    }
    PQfreemem(n);
  }
  return Status::Ok();
}

void PgHubStore::Write(std::string sql, std::vector<Param> params, std::string cas_what) {
  writes_.push_back({std::move(sql), std::move(params), std::move(cas_what)});
}

Status PgHubStore::FlushStreamRows() {
  // Entries of the same key keep the last write (one statement may not touch a row twice).
  for (int down = 0; down < 2; ++down) {
    std::map<std::tuple<std::string, uint64_t, uint64_t>, const HubTxn::Op*> rows;
    for (const auto& r : pending_rows_) {
      if (r.down == (down == 1)) rows[{r.op->key, r.op->stream, r.op->seq}] = r.op;
    }
    auto it = rows.begin();
    while (it != rows.end()) {
      std::string sql = std::string("INSERT INTO ") + (down ? "down" : "up") +
                        " (site, stream, seq, body) VALUES ";
      std::vector<Param> params;
      for (size_t n = 0; n < kRowsPerInsert && it != rows.end(); ++n, ++it) {
        const size_t b = params.size();
        if (n) sql += ",";
        sql += "($" + std::to_string(b + 1) + "::bytea,$" + std::to_string(b + 2) + "::int8,$" +
               std::to_string(b + 3) + "::int8,$" + std::to_string(b + 4) + "::bytea)";
        params.push_back({it->second->key});
        params.push_back({I8(it->second->stream)});
        params.push_back({Seq(it->second->seq)});
        params.push_back({std::string(it->second->bytes())});
      }
      sql += " ON CONFLICT (site, stream, seq) DO UPDATE SET body = EXCLUDED.body";
      Write(std::move(sql), std::move(params));
    }
    if (down) {
      // Commands written at a given number move the log's head (AppendDown) past them.
      std::map<std::pair<std::string, uint64_t>, uint64_t> heads;
      for (const auto& [k, op] : rows) {
        uint64_t& h = heads[{op->key, op->stream}];
        h = std::max(h, op->seq);
      }
      for (const auto& [k, head] : heads) {
        Write("INSERT INTO down_heads VALUES ($1::bytea, $2::int8, $3::int8) ON CONFLICT "
              "(site, stream) DO UPDATE SET head = GREATEST(down_heads.head, EXCLUDED.head)",
              {{k.first}, {I8(k.second)}, {Seq(head)}});
      }
    }
  }
  pending_rows_.clear();
  return Status::Ok();
}

Status PgHubStore::AddOp(const HubTxn::Op& op, bool check, std::vector<std::string>* notes) {
  using Kind = HubTxn::Kind;
  if (op.kind == Kind::kPutUp || op.kind == Kind::kPutDown) {
    pending_rows_.push_back({op.kind == Kind::kPutDown, &op});
    return Status::Ok();
  }
  OUTPOST_RETURN_IF_ERROR(FlushStreamRows());
  // A compare-and-set: the statement fails (and the transaction with it) if it touched no
  // row, that is if the record moved on (or exists) since it was read.
  auto cas = [&](std::string sql, std::vector<Param> params, const std::string& what) {
    Write("WITH w AS (" + sql + " RETURNING 1) SELECT 1 / (SELECT count(*)::int FROM w)",
          std::move(params),
          what + " changed since it was read (expected revision " + std::to_string(op.expect) +
              ")");
    return Status::Ok();
  };
  switch (op.kind) {
    case Kind::kPutSite: {
      notes->push_back("site/" + op.key);
      // The rev column is always the revision inside the record.
      if (!check) {
        Write("INSERT INTO sites VALUES ($1::bytea, $2::int8, $3::bytea) ON CONFLICT "
                    "(name) DO UPDATE SET body = EXCLUDED.body, rev = EXCLUDED.rev",
                    {{op.key}, {I8(op.rev)}, {op.value}});
      return Status::Ok();
      }
      if (op.expect == 0) {
        return cas("INSERT INTO sites VALUES ($1::bytea, $2::int8, $3::bytea) ON CONFLICT "
                        "DO NOTHING", {{op.key}, {I8(op.rev)}, {op.value}},
                   "site " + op.key);
      }
      return cas("UPDATE sites SET rev = $3::int8, body = $4::bytea WHERE name = "
                      "$1::bytea AND rev = $2::int8", {{op.key}, {I8(op.expect)}, {I8(op.rev)}, {op.value}},
                 "site " + op.key);
    }
    case Kind::kDeleteSite:
      notes->push_back("site/" + op.key);
      Write("DELETE FROM sites WHERE name = $1::bytea", {{op.key}});
      return Status::Ok();
    case Kind::kTrimDown:
    case Kind::kTrimUp:
      Write(std::string("DELETE FROM ") + (op.kind == Kind::kTrimUp ? "up" : "down") +
                      " WHERE site = $1::bytea AND stream = $2::int8 AND seq <= $3::int8",
                  {{op.key}, {I8(op.stream)}, {Seq(op.seq)}});
      return Status::Ok();
    case Kind::kPutRun: {
      if (op.split) return Status::Internal("PgHubStore keeps a run's tasks in its record");
      const size_t nul = op.key2.find('\0');
      if (nul == std::string::npos) return Status::Internal("run " + op.key + " without its site");
      std::vector<Param> p = {{op.key},        {op.key2.substr(0, nul)}, {RunTimeKey(op.key)},
                              {op.key2.substr(nul + 1)}, {I8(op.rev)}, {op.value}};
      if (!check) {
        Write("INSERT INTO runs VALUES ($1::bytea, $2::bytea, $3::bytea, $4::text, "
                    "$5::int8, $6::bytea) ON CONFLICT (id) DO UPDATE SET site = "
                    "EXCLUDED.site, tkey = EXCLUDED.tkey, state = EXCLUDED.state, body = "
                    "EXCLUDED.body, rev = EXCLUDED.rev",
                    p);
      return Status::Ok();
      }
      if (op.expect == 0) {
        return cas("INSERT INTO runs VALUES ($1::bytea, $2::bytea, $3::bytea, $4::text, "
                        "$5::int8, $6::bytea) ON CONFLICT DO NOTHING", p,
                   "run " + op.key);
      }
      p.push_back({I8(op.expect)});
      return cas("UPDATE runs SET site = $2::bytea, tkey = $3::bytea, state = $4::text, rev = "
                      "$5::int8, body = $6::bytea WHERE id = $1::bytea AND rev = $7::int8", p,
                 "run " + op.key);
    }
    case Kind::kPutOutput:
      Write("INSERT INTO outputs VALUES ($1::bytea, $2::bytea, $3::bytea) ON CONFLICT "
                  "(run, task) DO UPDATE SET body = EXCLUDED.body",
                  {{op.key}, {op.key2}, {op.value}});
      return Status::Ok();
    case Kind::kPutDef:
      notes->push_back("defs");
      Write("INSERT INTO defs VALUES ($1::bytea, $2::bytea) ON CONFLICT (name) DO UPDATE "
                  "SET body = EXCLUDED.body",
                  {{op.key}, {op.value}});
      return Status::Ok();
    case Kind::kDeleteDef:
      notes->push_back("defs");
      Write("DELETE FROM defs WHERE name = $1::bytea", {{op.key}});
      return Status::Ok();
    case Kind::kPutRequest:
      if (op.expect == 0 && check) {
        return cas("INSERT INTO requests VALUES ($1::bytea, $2::bytea) ON CONFLICT DO NOTHING", {{op.key}, {op.value}},
                   "request " + op.key);
      }
      Write("INSERT INTO requests VALUES ($1::bytea, $2::bytea) ON CONFLICT (id) DO UPDATE "
                  "SET body = EXCLUDED.body",
                  {{op.key}, {op.value}});
      return Status::Ok();
    case Kind::kAudit:
      Write("INSERT INTO audit (seq, body) VALUES ($1::int8, $2::bytea)",
                  {{I8(op.seq)}, {op.value}});
      return Status::Ok();
    case Kind::kDeleteRun:
      Write("DELETE FROM runs WHERE id = $1::bytea", {{op.key}});
      Write("DELETE FROM outputs WHERE run = $1::bytea", {{op.key}});
      return Status::Ok();
    case Kind::kPurgeSiteStreams:
      Write("DELETE FROM up WHERE site = $1::bytea", {{op.key}});
      Write("DELETE FROM down_heads WHERE site = $1::bytea", {{op.key}});
      Write("DELETE FROM down WHERE site = $1::bytea", {{op.key}});
      return Status::Ok();
    case Kind::kPutSetting:
      if (op.key == "policy") notes->push_back("policy");
      Write("INSERT INTO settings VALUES ($1::bytea, $2::bytea) ON CONFLICT (key) DO "
                  "UPDATE SET body = EXCLUDED.body",
                  {{op.key}, {op.value}});
      return Status::Ok();
    case Kind::kPutChunk:
      Write("INSERT INTO chunks VALUES ($1::bytea, $2::bytea) ON CONFLICT DO NOTHING",
                  {{op.key}, {op.value}});
      return Status::Ok();
    case Kind::kPutArtifact:
      notes->push_back("artifacts");
      Write("INSERT INTO artifacts VALUES ($1::bytea, $2::bytea) ON CONFLICT (digest) DO "
                  "UPDATE SET body = EXCLUDED.body",
                  {{op.key}, {op.value}});
      return Status::Ok();
    case Kind::kAppendDown: {
      // The number comes from the site's head row, locked until this transaction ends: two
      // hub processes appending to one site wait for each other instead of colliding.
      notes->push_back("down/" + op.key);
      Write("WITH h AS (INSERT INTO down_heads VALUES ($1::bytea, $2::int8, 1) ON CONFLICT "
            "(site, stream) DO UPDATE SET head = down_heads.head + 1 RETURNING head) "
            "INSERT INTO down (site, stream, seq, body) SELECT $1::bytea, $2::int8, h.head, "
            "$3::bytea FROM h",
            {{op.key}, {I8(op.stream)}, {op.value}});
      return Status::Ok();
    }
    case Kind::kPutUp:
    case Kind::kPutDown: break;  // above
  }
  return Status::Internal("unknown hub transaction operation");
}

Status PgHubStore::Commit(const Txn& txn) {
  if (txn.ops().empty()) return Status::Ok();
  const auto t0 = std::chrono::steady_clock::now();
  if (PQstatus(conn_) == CONNECTION_BAD && !Reconnect()) {
    return Status::Unavailable("PostgreSQL: " + ConnError(conn_));
  }
  // The statements, built first (AddOp), then sent in one pipeline ending in COMMIT: one
  // round trip for the whole transaction. A compare-and-set that finds another revision
  // fails its statement, which aborts the transaction and skips the COMMIT.
  writes_.clear();
  pending_rows_.clear();
  Write("BEGIN", {});
  std::vector<std::string> notes;
  uint64_t audit = audit_head_;
  for (const auto& op : txn.ops()) {
    // Unchecked (the simulator's planted bug): written whatever revision is there.
    OUTPOST_RETURN_IF_ERROR(AddOp(op, !txn.unchecked() && op.expect != HubTxn::kAnyRev, &notes));
    if (op.kind == HubTxn::Kind::kAudit) audit = std::max(audit, op.seq);
  }
  OUTPOST_RETURN_IF_ERROR(FlushStreamRows());
  pending_rows_.clear();
  if (!notes.empty()) {
    std::set<std::string> uniq(notes.begin(), notes.end());
    std::string payload;
    for (const auto& n : uniq) {
      if (payload.size() + n.size() + 1 > 7000) {
        payload = "*";  // NOTIFY carries at most 8,000 bytes: everything is read again
        break;
      }
      if (!payload.empty()) payload += "\n";
      payload += n;
    }
    Write("SELECT pg_notify($1::text, $2::text)", {{channel_}, {payload}});
  }
  Write("COMMIT", {});
  std::vector<Statement> batch = std::move(writes_);
  writes_.clear();

  if (PQenterPipelineMode(conn_) != 1) {
    return Status::Unavailable("PostgreSQL pipeline: " + ConnError(conn_));
  }
  size_t sent = 0;
  for (const auto& w : batch) {
    std::vector<const char*> values;
    std::vector<int> lengths, formats;
    for (const auto& p : w.params) {
      values.push_back(p.data.data());
      lengths.push_back(static_cast<int>(p.data.size()));
      formats.push_back(1);
    }
    if (PQsendQueryParams(conn_, w.sql.c_str(), static_cast<int>(w.params.size()), nullptr,
                          values.data(), lengths.data(), formats.data(), 1) != 1) {
      break;
    }
    ++sent;
  }
  const bool synced = PQpipelineSync(conn_) == 1;
  // Results, one per statement sent, in order; the first failure decides.
  Status st;
  bool committed = false, commit_answered = false;
  for (size_t i = 0; i < sent; ++i) {
    PGresult* raw = PQgetResult(conn_);
    if (!raw) break;  // the connection is gone
    PgResult r(raw);
    while (PGresult* extra = PQgetResult(conn_)) PQclear(extra);  // the NULL after each query
    const auto rs = PQresultStatus(r.get());
    const bool last = i + 1 == batch.size();
    if (last) commit_answered = true;
    if (rs == PGRES_COMMAND_OK || rs == PGRES_TUPLES_OK) {
      committed = last;
      continue;
    }
    if (!st.ok() || rs == PGRES_PIPELINE_ABORTED) continue;
    const char* state = PQresultErrorField(r.get(), PG_DIAG_SQLSTATE);
    const std::string code = state ? state : "";
    const std::string why = OneLine(PQresultErrorMessage(r.get()));
    if (code == "22012" && !batch[i].cas_what.empty()) {
      st = Status::Aborted(batch[i].cas_what);
    } else if (code == "40001" || code == "40P01" || code == "23505") {
      st = Status::Aborted("PostgreSQL: " + why);
    } else {
      st = Status::Unavailable("PostgreSQL: " + why);
    }
  }
  const bool commit_unknown = sent == batch.size() && !commit_answered;
  if (synced) {
    // The pipeline's end marker, then out of pipeline mode.
    for (int i = 0; i < 1000; ++i) {
      PGresult* raw = PQgetResult(conn_);
      if (!raw) {
        if (PQstatus(conn_) == CONNECTION_BAD) break;
        continue;
      }
      const bool end = PQresultStatus(raw) == PGRES_PIPELINE_SYNC;
      PQclear(raw);
      if (end) break;
    }
  }
  if (PQexitPipelineMode(conn_) != 1) Reconnect();  // a pipeline left half read
  commit_seconds_.Observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  if (committed) {
    audit_head_ = audit;
    return Status::Ok();
  }
  if (PQstatus(conn_) == CONNECTION_OK && PQtransactionStatus(conn_) != PQTRANS_IDLE) {
    PgResult rb(PQexec(conn_, "ROLLBACK"));
  }
  if (commit_unknown) {
    // COMMIT was sent and never answered: whether it landed is unknown, and the hub
    // reopens from what the database holds.
    write_failed_ = true;
    return Status::IoError("PostgreSQL commit: " + ConnError(conn_));
  }
  if (st.ok()) return Status::Unavailable("PostgreSQL: " + ConnError(conn_));
  return st;
}

namespace {

template <typename T>
Status DecodeRows(const PgResult& r, int col, const char* what, std::vector<T>* out) {
  for (int i = 0; i < r.rows(); ++i) {
    T v;
    OUTPOST_RETURN_IF_ERROR(Decode(r.bytes(i, col), &v).WithContext(what));
    out->push_back(std::move(v));
  }
  return Status::Ok();
}

}  // namespace

Status PgHubStore::LoadSites(std::vector<SiteRecord>* out) const {
  OUTPOST_ASSIGN_OR_RETURN(auto r, Exec("SELECT body FROM sites ORDER BY name", {}));
  return DecodeRows(r, 0, "site record", out);
}

Result<std::optional<SiteRecord>> PgHubStore::GetSite(const std::string& name) const {
  OUTPOST_ASSIGN_OR_RETURN(auto r,
                           Exec("SELECT body FROM sites WHERE name = $1::bytea", {{name}}));
  if (r.rows() == 0) return std::optional<SiteRecord>();
  SiteRecord s;
  OUTPOST_RETURN_IF_ERROR(Decode(r.bytes(0, 0), &s).WithContext("site record " + name));
  return std::optional<SiteRecord>(std::move(s));
}

Result<uint64_t> PgHubStore::DownHead(const std::string& site, uint64_t epoch) const {
  OUTPOST_ASSIGN_OR_RETURN(
      auto r, Exec("SELECT head FROM down_heads WHERE site = $1::bytea AND stream = $2::int8",
                   {{site}, {I8(epoch)}}));
  return r.rows() == 0 ? uint64_t{0} : r.u64(0, 0);
}

Status PgHubStore::LoadDefs(std::vector<WorkflowRecord>* out) const {
  OUTPOST_ASSIGN_OR_RETURN(auto r, Exec("SELECT body FROM defs ORDER BY name", {}));
  return DecodeRows(r, 0, "workflow record", out);
}

Result<std::optional<HubRun>> PgHubStore::GetRun(const std::string& id) const {
  OUTPOST_ASSIGN_OR_RETURN(auto r, Exec("SELECT body FROM runs WHERE id = $1::bytea", {{id}}));
  if (r.rows() == 0) return std::optional<HubRun>();
  HubRun run;
  OUTPOST_RETURN_IF_ERROR(Decode(r.bytes(0, 0), &run).WithContext("run record " + id));
  return std::optional<HubRun>(std::move(run));
}

Status PgHubStore::ScanRunsWhere(const std::string& sql, const std::vector<Param>& params,
                                 const std::function<bool(const HubRun&)>& fn) const {
  // Read in pages of 500 so that a scan that stops early costs what it read; each query
  // continues after the last key of the one before (the caller's query orders by `key`).
  std::vector<Param> p = params;
  std::string last;
  bool first = true;
  for (;;) {
    std::vector<Param> q = p;
    q.push_back({last});
    q.push_back({first ? std::string("1") : std::string("0")});
    OUTPOST_ASSIGN_OR_RETURN(auto r, Exec(sql, q));
    for (int i = 0; i < r.rows(); ++i) {
      HubRun run;
      OUTPOST_RETURN_IF_ERROR(Decode(r.bytes(i, 0), &run).WithContext("run record"));
      if (!fn(run)) return Status::Ok();
    }
    if (r.rows() < 500) return Status::Ok();
    last = r.bytes(r.rows() - 1, 1);
    first = false;
  }
}

Status PgHubStore::ScanRuns(const std::function<bool(const HubRun&)>& fn) const {
  return ScanRunsWhere(
      "SELECT body, id FROM runs WHERE ($2::text = '1' OR id > $1::bytea) ORDER BY id LIMIT 500",
      {}, fn);
}

Status PgHubStore::ScanSiteRunsNewestFirst(const std::string& site, const std::string& after,
                                           const std::function<bool(const HubRun&)>& fn) const {
  // Newest first within the site: descending id, below `after` when given.
  if (after.empty()) {
    return ScanRunsWhere(
        "SELECT body, id FROM runs WHERE site = $1::bytea AND ($3::text = '1' OR id < "
        "$2::bytea) ORDER BY id DESC LIMIT 500",
        {{site}}, fn);
  }
  return ScanRunsWhere(
      "SELECT body, id FROM runs WHERE site = $1::bytea AND id < $2::bytea AND ($4::text = '1' "
      "OR id < $3::bytea) ORDER BY id DESC LIMIT 500",
      {{site}, {after}}, fn);
}

Status PgHubStore::ScanRunsNewestFirst(const std::string& after,
                                       const std::function<bool(const HubRun&)>& fn) const {
  if (after.empty()) {
    return ScanRunsWhere(
        "SELECT body, tkey FROM runs WHERE ($2::text = '1' OR tkey < $1::bytea) ORDER BY tkey "
        "DESC LIMIT 500",
        {}, fn);
  }
  return ScanRunsWhere(
      "SELECT body, tkey FROM runs WHERE tkey < $1::bytea AND ($3::text = '1' OR tkey < "
      "$2::bytea) ORDER BY tkey DESC LIMIT 500",
      {{RunTimeKey(after)}}, fn);
}

Result<std::optional<std::map<std::string, uint64_t>>> PgHubStore::CountRunsByState() const {
  OUTPOST_ASSIGN_OR_RETURN(
      auto r, Exec("SELECT state, count(*)::int8 FROM runs GROUP BY state", {}));
  std::map<std::string, uint64_t> counts;
  for (int i = 0; i < r.rows(); ++i) counts[r.bytes(i, 0)] = r.u64(i, 1);
  return std::optional<std::map<std::string, uint64_t>>(std::move(counts));
}

Result<std::optional<std::string>> PgHubStore::GetOutput(const std::string& run,
                                                         const std::string& task) const {
  OUTPOST_ASSIGN_OR_RETURN(
      auto r, Exec("SELECT body FROM outputs WHERE run = $1::bytea AND task = $2::bytea",
                   {{run}, {task}}));
  if (r.rows() == 0) return std::optional<std::string>();
  return std::optional<std::string>(r.bytes(0, 0));
}

Result<std::optional<RequestRecord>> PgHubStore::GetRequest(const std::string& id) const {
  OUTPOST_ASSIGN_OR_RETURN(auto r,
                           Exec("SELECT body FROM requests WHERE id = $1::bytea", {{id}}));
  if (r.rows() == 0) return std::optional<RequestRecord>();
  RequestRecord q;
  OUTPOST_RETURN_IF_ERROR(Decode(r.bytes(0, 0), &q).WithContext("request " + id));
  return std::optional<RequestRecord>(std::move(q));
}

Result<std::optional<std::string>> PgHubStore::GetSetting(const std::string& key) const {
  OUTPOST_ASSIGN_OR_RETURN(auto r,
                           Exec("SELECT body FROM settings WHERE key = $1::bytea", {{key}}));
  if (r.rows() == 0) return std::optional<std::string>();
  return std::optional<std::string>(r.bytes(0, 0));
}

Status PgHubStore::ScanSettings(
    const std::string& prefix,
    const std::function<void(const std::string&, const std::string&)>& fn) const {
  OUTPOST_ASSIGN_OR_RETURN(
      auto r, Exec("SELECT key, body FROM settings WHERE substring(key from 1 for "
                   "length($1::bytea)) = $1::bytea ORDER BY key",
                   {{prefix}}));
  for (int i = 0; i < r.rows(); ++i) fn(r.bytes(i, 0), r.bytes(i, 1));
  return Status::Ok();
}

Result<std::optional<std::string>> PgHubStore::GetChunk(const std::string& digest) const {
  OUTPOST_ASSIGN_OR_RETURN(
      auto r, Exec("SELECT body FROM chunks WHERE digest = $1::bytea", {{digest}}));
  if (r.rows() == 0) return std::optional<std::string>();
  return std::optional<std::string>(r.bytes(0, 0));
}

Status PgHubStore::LoadArtifacts(std::vector<ArtifactRecord>* out) const {
  OUTPOST_ASSIGN_OR_RETURN(auto r, Exec("SELECT body FROM artifacts ORDER BY digest", {}));
  return DecodeRows(r, 0, "artifact", out);
}

Result<std::vector<LogRecord>> PgHubStore::ReadStream(const char* table, const std::string& site,
                                                      uint64_t stream, uint64_t after,
                                                      size_t max_count, size_t max_bytes,
                                                      bool gaps_allowed) const {
  std::vector<LogRecord> out;
  if (max_count == 0) return out;
  const uint64_t limit = std::min<uint64_t>(max_count, 10000);
  size_t bytes = 0;
  uint64_t expect = after + 1;
  uint64_t from = after;
  while (out.size() < max_count) {
    OUTPOST_ASSIGN_OR_RETURN(
        auto r, Exec(std::string("SELECT seq, body FROM ") + table +
                         " WHERE site = $1::bytea AND stream = $2::int8 AND seq > $3::int8 "
                         "ORDER BY seq LIMIT $4::int8",
                     {{site}, {I8(stream)}, {Seq(from)}, {I8(limit)}}));
    for (int i = 0; i < r.rows() && out.size() < max_count; ++i) {
      const uint64_t seq = r.u64(i, 0);
      if (seq != expect && !gaps_allowed) {
        return Status::Corruption("stream of site " + site + " has a gap: expected " +
                                  std::to_string(expect) + ", found " + std::to_string(seq));
      }
      const size_t len = static_cast<size_t>(PQgetlength(r.get(), i, 1));
      if (!out.empty() && bytes + len > max_bytes) return out;
      bytes += len;
      out.push_back({seq, r.bytes(i, 1)});
      expect = seq + 1;
      from = seq;
    }
    if (static_cast<uint64_t>(r.rows()) < limit) break;
  }
  return out;
}

Result<std::vector<LogRecord>> PgHubStore::ReadDown(const std::string& site, uint64_t epoch,
                                                    uint64_t after, size_t max_count,
                                                    size_t max_bytes) const {
  return ReadStream("down", site, epoch, after, max_count, max_bytes, false);
}

Result<std::vector<LogRecord>> PgHubStore::ReadUp(const std::string& site, uint64_t incarnation,
                                                  uint64_t after, size_t max_count) const {
  return ReadStream("up", site, incarnation, after, max_count, SIZE_MAX, true);
}

Status PgHubStore::ReadAudit(size_t limit, std::vector<std::string>* out) const {
  OUTPOST_ASSIGN_OR_RETURN(
      auto r, Exec("SELECT body FROM audit ORDER BY n DESC LIMIT $1::int8",
                   {{I8(std::min<uint64_t>(limit, INT64_MAX))}}));
  out->clear();
  for (int i = r.rows() - 1; i >= 0; --i) out->push_back(r.bytes(i, 0));
  return Status::Ok();
}

uint64_t PgHubStore::ApproximateSize() const {
  auto r = Exec(
      "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::int8 FROM pg_class c JOIN "
      "pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1::text AND c.relkind = 'r'",
      {{schema_}});
  if (!r.ok() || r->rows() != 1) return 0;
  return r->u64(0, 0);
}

Status PgHubStore::DropSchema() {
  return ExecAll("DROP SCHEMA IF EXISTS " + schema_ + " CASCADE");
}

}  // namespace outpost
