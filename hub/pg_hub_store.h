// PgHubStore: the hub store on PostgreSQL, for several hub processes over one database
// (docs/operations.md, "Several hubs over PostgreSQL"). RocksHubStore stays the default.
//
// Tables (in one schema, "outpost" unless told), every key bytea so that keys compare
// byte by byte as in RocksDB:
//   sites (name, rev, body)              runs (id, site, tkey, state, rev, body)
//   up / down (site, stream, seq, body)  outputs (run, task, body)
//   defs (name, body)  requests (id, body)  settings (key, body)
//   chunks (digest, body)  artifacts (digest, body)  audit (n bigserial, seq, body)
//
// A HubTxn is one PostgreSQL transaction, committed with synchronous_commit on: Commit
// returns only after the database made it durable (and, where a synchronous standby is
// configured, replicated). Sites and runs are written by compare-and-set on their
// revision, requests only if absent: a conflict rolls the whole transaction back and
// Commit returns Aborted. Writes announce themselves with NOTIFY on channel
// "outpost_<schema>", which every other hub process LISTENs to (changes_fd).
//
// Thread-safety: one owner thread (one libpq connection).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "hub/hub_store.h"

typedef struct pg_conn PGconn;

namespace outpost {

class PgResult;

class PgHubStore : public HubStore {
 public:
  struct Options {
    std::string schema = "outpost";  // [a-z0-9_], created if missing
  };

  // A schema name the store accepts (checked by --check-config too).
  static Status CheckSchemaName(const std::string& schema);
  // conninfo: a libpq connection string or URI (postgresql://...).
  static Result<std::unique_ptr<PgHubStore>> Open(const std::string& conninfo,
                                                  const Options& options);
  ~PgHubStore() override;

  Status Commit(const Txn& txn) override;
  bool write_failed() const override { return write_failed_; }
  const Histogram* commit_seconds() const override { return &commit_seconds_; }
  bool shared() const override { return true; }
  int changes_fd() const override;
  Status TakeChanges(std::vector<std::string>* out) override;
  Result<std::optional<std::map<std::string, uint64_t>>> CountRunsByState() const override;
  Result<std::optional<SiteRecord>> GetSite(const std::string& name) const override;
  bool allocates_commands() const override { return true; }
  Result<uint64_t> DownHead(const std::string& site, uint64_t epoch) const override;

  Status LoadSites(std::vector<SiteRecord>* out) const override;
  Status LoadDefs(std::vector<WorkflowRecord>* out) const override;
  Result<std::optional<HubRun>> GetRun(const std::string& id) const override;
  Status ScanRuns(const std::function<bool(const HubRun&)>& fn) const override;
  Status ScanRunsNewestFirst(const std::string& after,
                             const std::function<bool(const HubRun&)>& fn) const override;
  Status ScanSiteRunsNewestFirst(const std::string& site, const std::string& after,
                                 const std::function<bool(const HubRun&)>& fn) const override;
  Result<std::optional<std::string>> GetOutput(const std::string& run,
                                               const std::string& task) const override;
  Result<std::optional<RequestRecord>> GetRequest(const std::string& id) const override;
  Result<std::optional<std::string>> GetSetting(const std::string& key) const override;
  Status ScanSettings(const std::string& prefix,
                      const std::function<void(const std::string&, const std::string&)>& fn)
      const override;
  Result<std::optional<std::string>> GetChunk(const std::string& digest) const override;
  Status LoadArtifacts(std::vector<ArtifactRecord>* out) const override;
  Result<std::vector<LogRecord>> ReadDown(const std::string& site, uint64_t epoch, uint64_t after,
                                          size_t max_count, size_t max_bytes) const override;
  Result<std::vector<LogRecord>> ReadUp(const std::string& site, uint64_t incarnation,
                                        uint64_t after, size_t max_count) const override;
  Status ReadAudit(size_t limit, std::vector<std::string>* out) const override;
  uint64_t audit_head() const override { return audit_head_; }
  uint64_t ApproximateSize() const override;

  // Test-only: removes the schema and everything in it.
  Status DropSchema();

 private:
  // A binary parameter: raw bytes for bytea and text, 8 bytes big-endian for int8.
  struct Param {
    std::string data;
  };
  PgHubStore() = default;
  // Runs one read; binary parameters and results. A lost connection is made again once
  // (Reconnect). Writes go through Write and Commit's pipeline.
  Result<PgResult> Exec(const std::string& sql, const std::vector<Param>& params) const;
  // Connects again, sets the session up (synchronous_commit, schema, LISTEN) and queues
  // "*" as a change: notifications may have been missed. False if the server is away.
  bool Reconnect() const;
  Status ExecAll(const std::string& sql) const;  // several statements, no parameters
  Status AddOp(const HubTxn::Op& op, bool check, std::vector<std::string>* notes);
  Status FlushStreamRows();
  // A write of the transaction being built (sent by Commit in one pipeline); cas_what, if
  // set, says what changed when the statement fails as a refused compare-and-set.
  void Write(std::string sql, std::vector<Param> params, std::string cas_what = "");
  struct Statement {
    std::string sql;
    std::vector<Param> params;
    std::string cas_what;
  };
  std::vector<Statement> writes_;
  Status ScanRunsWhere(const std::string& sql, const std::vector<Param>& params,
                       const std::function<bool(const HubRun&)>& fn) const;
  Result<std::vector<LogRecord>> ReadStream(const char* table, const std::string& site,
                                            uint64_t stream, uint64_t after, size_t max_count,
                                            size_t max_bytes, bool gaps_allowed) const;

  PGconn* conn_ = nullptr;
  std::string schema_;
  std::string channel_;
  mutable bool lost_changes_ = false;
  bool write_failed_ = false;
  uint64_t audit_head_ = 0;
  mutable int backend_pid_ = 0;  // this connection's server process (its own notifications)
  Histogram commit_seconds_{Histogram::LatencyBounds()};
  // PutUp/PutDown rows of the transaction being committed, written as multi-row inserts.
  struct StreamRow {
    bool down;
    const HubTxn::Op* op;
  };
  std::vector<StreamRow> pending_rows_;
};

}  // namespace outpost
