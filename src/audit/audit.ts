import type { Knex } from 'knex'
import { toDataError } from '../errors/driver-errors.js'
import { ValidationError } from '../errors/index.js'
import type { AuditLog } from '../models/audit-log.js'
import type { LoginAttempt } from '../auth/login.js'
import { verifyAuditChain, type AuditVerification } from './chain.js'
import { auditRowInsert, stampedRow, type AuditStamp } from './recorder.js'

/**
 * A custom audit event: what it is about and what changed. `action` is given separately, e.g. `droplet.reboot`.
 *
 * @example
 * ```ts
 * const event: AuditEvent = { entityType: 'droplet', entityId: droplet.id, metadata: { console: 'vnc' } }
 * await scope.audit.record('droplet.console_opened', event)
 * ```
 */
export interface AuditEvent {
  readonly entityType?: string
  readonly entityId?: string
  /** `{ field: { from, to } }`, as the library records changes. Values are stored as given: leave secrets out. */
  readonly changes?: Readonly<Record<string, { readonly from?: unknown; readonly to?: unknown }>>
  /** Anything else worth keeping; merged over the scope's request metadata. */
  readonly metadata?: Readonly<Record<string, unknown>>
}

/**
 * `scope.audit`: the audit trail as one scope writes it.
 *
 * @example
 * ```ts
 * await scope.audit.record('droplet.reboot', { entityType: 'droplet', entityId: id })
 * ```
 */
export interface ScopeAudit {
  /**
   * Writes one audit row for a custom event, with the scope's actor and request metadata, in the scope's
   * transaction when it has one (so it commits or rolls back with the change it describes).
   */
  record(action: string, event?: AuditEvent): Promise<AuditLog>
}

/**
 * `db.audit`: the tamper-evidence chain and retention of the audit log. (Reading the log is
 * `scope.repo(AuditLog).list(…)`: admins read every entry, users the entries where they are the actor.)
 *
 * @example
 * ```ts
 * await db.audit.enableHashChain()
 * const report = await db.audit.verify()
 * if (!report.ok) alert(report.problem)
 * ```
 */
export interface DatabaseAudit {
  /**
   * Turns the hash chain on, for good: from now on each audit row carries its sequence number, the previous row's
   * hash and its own. The rows written before it are anchored: their count and a digest of them are kept in the
   * chain's head, so `verify()` notices one added, removed or changed later. Idempotent; needs the owner of
   * `audit_logs` (it installs triggers). Returns when the chain started.
   */
  enableHashChain(): Promise<{ readonly enabledAt: Date }>
  /**
   * Walks the chain, in one read-only snapshot, and names the first row that was modified, deleted or inserted out of
   * band; checks that the head names the last row, and that the rows without a sequence number are exactly the ones
   * anchored when the chain started.
   */
  verify(options?: {
    readonly batchSize?: number
    readonly onProgress?: (checked: number) => void
  }): Promise<AuditVerification>
  /**
   * The chain's last sequence number and hash: publish it elsewhere (a log, a ticket) now and then, so even a
   * rewrite of the whole chain is caught by comparing.
   */
  head(): Promise<{ readonly seq: string; readonly hash: string } | undefined>
  /**
   * Retention: deletes the audit rows written before `before` (for the chain, its whole prefix before the first
   * row at or after the cutoff, so verification still passes) and records that it did, with `reason`. The only way
   * audit rows are ever deleted; it needs the owner of `audit_logs`.
   */
  purge(options: { readonly before: Date; readonly reason: string }): Promise<{ readonly deleted: number }>
}

const ACTION = /^[a-z][a-z0-9_.-]*$/

function checkEvent(action: unknown, event: unknown): { action: string; event: AuditEvent } {
  if (typeof action !== 'string' || action.length === 0 || action.length > 128 || !ACTION.test(action)) {
    throw new ValidationError('An audit action is a lower-case name such as droplet.reboot.', [
      { field: 'action', message: 'must match ^[a-z][a-z0-9_.-]*$ (at most 128 characters)' },
    ])
  }
  if (event === undefined) return { action, event: {} }
  if (typeof event !== 'object' || event === null || Array.isArray(event)) {
    throw new ValidationError('An audit event must be an object.', [{ field: 'event', message: 'must be an object' }])
  }
  const e = event as Record<string, unknown>
  for (const key of Object.keys(e)) {
    if (!['entityType', 'entityId', 'changes', 'metadata'].includes(key)) {
      throw new ValidationError(`Unknown audit event field ${key}.`, [{ field: `event.${key}`, message: 'is unknown' }])
    }
  }
  for (const [key, max] of [
    ['entityType', 64],
    ['entityId', 255],
  ] as const) {
    const value = e[key]
    if (value !== undefined && (typeof value !== 'string' || value.length === 0 || value.length > max)) {
      throw new ValidationError(`event.${key} must be a short string.`, [
        { field: `event.${key}`, message: `must be a string of 1 to ${max} characters` },
      ])
    }
  }
  for (const key of ['changes', 'metadata'] as const) {
    const value = e[key]
    if (value !== undefined && (typeof value !== 'object' || value === null || Array.isArray(value))) {
      throw new ValidationError(`event.${key} must be an object.`, [
        { field: `event.${key}`, message: 'must be an object' },
      ])
    }
  }
  return { action, event: e }
}

/**
 * Writes one custom audit row with `run` (a function that runs SQL in the scope's transaction, with its
 * row-level security settings when it has any).
 *
 * @internal
 */
export async function recordAuditEvent(
  run: (sql: string, bindings: readonly unknown[]) => Promise<{ rows: Record<string, unknown>[] }>,
  AuditLogModel: typeof AuditLog,
  stamp: AuditStamp,
  action: unknown,
  event: unknown,
): Promise<AuditLog> {
  const checked = checkEvent(action, event)
  const { entityType, entityId, changes, metadata } = checked.event
  const insert = auditRowInsert(stampedRow(stamp, checked.action, { entityType, entityId, changes, metadata }))
  const result = await run(insert.sql, insert.bindings)
  return AuditLogModel.fromDatabaseJson(result.rows[0]!)
}

/**
 * The audit row of a login attempt, written in the login's transaction: `auth.login` or `auth.login_failed`, by
 * the user who matched (if any), with the login name as typed and the reason. Never the password.
 *
 * @internal
 */
export async function recordLoginAttempt(attempt: LoginAttempt): Promise<void> {
  const insert = auditRowInsert({
    actorId: attempt.userId ?? null,
    actorRole: attempt.role ?? null,
    action: attempt.success ? 'auth.login' : 'auth.login_failed',
    entityType: 'user',
    entityId: attempt.userId ?? null,
    metadata: { ...attempt.meta, login: attempt.login, reason: attempt.reason },
  })
  await attempt.transaction.raw(insert.sql, insert.bindings as Knex.RawBinding[])
}

/** @internal */
export function createDatabaseAudit(knex: Knex, systemStamp: (reason: string) => AuditStamp): DatabaseAudit {
  const run = async <T>(work: () => Promise<T>): Promise<T> => {
    try {
      return await work()
    } catch (error) {
      throw toDataError(error)
    }
  }
  return Object.freeze({
    enableHashChain: () =>
      run(async () => {
        const { rows } = await knex.raw<{ rows: { started: Date }[] }>(
          'select wincloud_audit_enable_chain() as started',
        )
        return { enabledAt: rows[0]!.started }
      }),
    verify: (options: { batchSize?: number; onProgress?: (checked: number) => void } = {}) => {
      const batchSize = options.batchSize ?? 5_000
      if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 100_000) {
        return Promise.reject(
          new ValidationError('batchSize must be an integer from 1 to 100000.', [
            { field: 'batchSize', message: 'must be an integer from 1 to 100000' },
          ]),
        )
      }
      return run(() => verifyAuditChain(knex, { batchSize, onProgress: options.onProgress }))
    },
    head: () =>
      run(async () => {
        const { rows } = await knex.raw<{ rows: { enabled_at: Date | null; seq: string; hash: Buffer }[] }>(
          'select enabled_at, last_seq::text as seq, last_hash as hash from wincloud_audit_chain where id',
        )
        const head = rows[0]
        return head === undefined || head.enabled_at === null
          ? undefined
          : { seq: head.seq, hash: head.hash.toString('hex') }
      }),
    purge: (options: { before: Date; reason: string }) => {
      const before = (options as { before?: unknown } | undefined)?.before
      if (!(before instanceof Date) || Number.isNaN(before.getTime())) {
        return Promise.reject(
          new ValidationError('purge needs a cutoff date: { before }.', [
            { field: 'before', message: 'must be a Date' },
          ]),
        )
      }
      const reason = options.reason
      if (typeof reason !== 'string' || reason.trim().length === 0 || reason.length > 500) {
        return Promise.reject(
          new ValidationError('purge needs a reason of 1 to 500 characters.', [
            { field: 'reason', message: 'must be a non-empty string' },
          ]),
        )
      }
      return run(() =>
        knex.transaction(async (trx) => {
          const { rows } = await trx.raw<{ rows: { deleted: string; anchor_seq: string }[] }>(
            'select deleted::text as deleted, anchor_seq::text as anchor_seq from wincloud_audit_purge(?)',
            [before],
          )
          const deleted = Number(rows[0]?.deleted ?? 0)
          const insert = auditRowInsert(
            stampedRow(systemStamp(reason), 'audit.purge', {
              entityType: 'audit_log',
              metadata: { before: before.toISOString(), deleted, anchorSeq: rows[0]?.anchor_seq ?? '0' },
            }),
          )
          await trx.raw(insert.sql, insert.bindings as Knex.RawBinding[])
          return { deleted }
        }),
      )
    },
  })
}
