// @daas/client: the TypeScript client of the DaaS orchestrator
// (daas.v1.DesktopService) over gRPC with mutual TLS.

export {
  DaasClient,
  EventStream,
  describe,
  parseState,
  stateName,
  type AddScheduleOptions,
  type AuditFilter,
  type CallOptions,
  type ClientOptions,
  type CreateSessionOptions,
  type ListFilter,
  type PemCredentials,
  type QuotaOptions,
  type ScheduleFilter,
  type SnapshotFilter,
  type StateLike,
} from "./client.js";
export { Code, DaasError, codeName, type FieldViolation } from "./errors.js";
export { type Replica } from "./replicas.js";
export {
  NodeState,
  OutputStream,
  SessionState,
  Tool,
  type Activity,
  type Amounts,
  type AuditEntry,
  type Failure,
  type IdleWarning,
  type ListTemplatesResponse,
  type Node,
  type OutputLine,
  type Pool,
  type Quota,
  type Schedule,
  type Session,
  type SessionEvent,
  type Size,
  type Snapshot,
  type StageChange,
  type Template,
} from "./gen/daas/v1/desktop_pb.js";
// The generated code itself (schemas, the service descriptor), for anything
// beyond this layer.
export * as pb from "./gen/daas/v1/desktop_pb.js";
