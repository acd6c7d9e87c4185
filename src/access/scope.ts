import { isStorableText } from '../internal/text.js'
import { isUuid } from '../internal/uuid.js'
import type { Knex } from 'knex'
import type { Model } from 'objection'
import type { ReadConsistency, ReplicaSet } from '../db/replicas.js'
import type { ReadCache } from '../db/cache.js'
import { toDataError } from '../errors/driver-errors.js'
import { ForbiddenError, InvalidCursorError, ValidationError } from '../errors/index.js'
import type { BaseModel } from '../models/base-model.js'
import { SYSTEM_ROLE, type Actor, type RolePermissions } from '../models/policy.js'
import { AuditLog } from '../models/audit-log.js'
import { AUDIT_TABLE, auditStamp } from '../audit/recorder.js'
import { recordAuditEvent, type AuditEvent, type ScopeAudit } from '../audit/audit.js'
import type { CursorCodec } from '../pagination/cursor-codec.js'
import type { ScopeContext } from './enforce.js'
import { SCOPE_ENFORCEMENT } from './enforcement.js'
import { Repository, type ScopedRepository } from './repository.js'
import { scopedTransactionSql } from './row-level-security.js'
import { StatementRunner } from './statement-runner.js'
import { decodeConsistencyToken, encodeConsistencyToken, primaryPosition } from './consistency-token.js'

/**
 * Request metadata that travels with a scope into its audit rows.
 *
 * @example
 * ```ts
 * const scope = db.scope(user, { ip: req.ip, userAgent: req.get('user-agent'), requestId: req.id })
 * ```
 */
export interface RequestMeta {
  readonly ip?: string
  readonly userAgent?: string
  readonly requestId?: string
}

/** Shared by every scope of one database. @internal */
export interface ScopeEnvironment {
  readonly knex: Knex
  readonly roles: Readonly<Record<string, RolePermissions>>
  /** Whether scoped transactions carry row-level security settings. */
  readonly rls: boolean
  /** Signs and checks pagination cursors. */
  readonly cursors: CursorCodec
  bind<C extends typeof Model>(modelClass: C): C
  /** Read routing over replicas, when the database has any. */
  readonly replicas?: ReplicaSet | undefined
  /** The Redis read cache, when configured. */
  readonly cache?: ReadCache | undefined
}

/**
 * Options of a scope: where its reads go (see {@link ReadConsistency}). Default `'session'` for user scopes,
 * `'primary'` for `db.system()`.
 *
 * @example
 * ```ts
 * const reporting = db.scope(admin, { requestId }, { consistency: 'replica' })
 * const afterWrite = db.scope(user, { requestId }, { after: req.get('x-consistency-token') })
 * ```
 */
export interface ScopeOptions {
  readonly consistency?: ReadConsistency
  /**
   * A consistency token from `scope.consistencyToken()` (this actor's, made by any instance sharing the signing
   * secrets): the scope's reads see everything committed before it was made, from a replica that has replayed that
   * far or from the primary. A forged, altered or other actor's token is an `InvalidCursorError`.
   */
  readonly after?: string
}

export type { ListOptions, ScopedRepository } from './repository.js'

/**
 * Who is acting, for one request or job: every repository obtained from it sees only what its actor may see.
 * Get one with `db.scope(actor, meta)` (a user) or `db.system(reason)` (jobs; sees everything). A scope is cheap:
 * make one per request, never share it between requests.
 *
 * @example
 * ```ts
 * app.get('/droplets', async (req, res) => {
 *   const scope = db.scope(req.user, { ip: req.ip, requestId: req.id })
 *   res.json(await scope.repo(Droplet).list({ filter: { status: 'active' } }))
 * })
 * ```
 */
export class Scope {
  /** The acting user, or undefined for `db.system()`. */
  readonly actor: Actor | undefined
  /** The actor's role, or `'system'`. */
  readonly role: string
  /** Why a system scope exists (for the audit trail); undefined for user scopes. */
  readonly reason: string | undefined
  readonly meta: RequestMeta
  /** Custom audit events, written with this scope's actor and metadata (in its transaction, if it has one). */
  readonly audit: ScopeAudit
  /**
   * Raw SQL inside `scope.transaction()`: the transaction itself. With `rls: true` the database still limits it
   * to the actor's rows (row-level security); without it, raw SQL is not scoped. Outside a transaction this is the
   * plain, unscoped knex.
   */
  readonly knex: Knex | Knex.Transaction
  readonly #env: ScopeEnvironment
  readonly #context: ScopeContext
  readonly #trx: Knex.Transaction | undefined
  readonly #repos = new Map<typeof Model, ScopedRepository<BaseModel>>()
  readonly #options: ScopeOptions
  /** Tables written in this scope's transaction (shared with nested ones), passed on when the outermost ends. */
  readonly #tablesWritten: Set<string>

  /** @internal */
  constructor(
    env: ScopeEnvironment,
    actor: Actor | undefined,
    reason: string | undefined,
    meta: RequestMeta,
    trx?: Knex.Transaction,
    options: ScopeOptions = {},
    tablesWritten: Set<string> = new Set(),
  ) {
    this.actor = actor
    this.role = actor === undefined ? SYSTEM_ROLE : actor.role
    this.reason = reason
    this.meta = meta
    this.#env = env
    this.#trx = trx
    this.knex = trx ?? env.knex
    this.#options = options
    this.#tablesWritten = tablesWritten
    const replicas = env.replicas
    const cache = env.cache
    const consistency = options.consistency ?? (actor === undefined ? 'primary' : 'session')
    const actorKey = actor?.id ?? SYSTEM_ROLE
    const after = options.after === undefined ? undefined : decodeConsistencyToken(env.cursors, actorKey, options.after)
    this.#context = Object.freeze({
      role: this.role,
      actorId: actor?.id,
      roles: env.roles,
      rlsSql: env.rls && actor !== undefined ? scopedTransactionSql(actor.id, actor.role, false) : undefined,
      inTransaction: trx !== undefined,
      enforcement: SCOPE_ENFORCEMENT,
      audit: auditStamp(actor?.id, this.role, meta as Readonly<Record<string, string>>, reason),
      ...(replicas === undefined
        ? {}
        : {
            reader: () => replicas.readerFor(actorKey, consistency, after),
            readerFailed: (reader: Knex, error: unknown) => replicas.markDown(reader, error),
          }),
      ...(replicas === undefined && cache === undefined
        ? {}
        : {
            wrote: (table: string) => {
              if (trx !== undefined) tablesWritten.add(table)
              else settleWrites(env, actorKey, [table])
            },
          }),
      ...(cache === undefined ? {} : { cache: { cache, actor: `${this.role}:${actorKey}` } }),
    })
    const context = this.#context
    // Custom audit events run where the scope's statements run (its transaction, or one of their own with RLS).
    const statements = new StatementRunner(context, trx ?? env.knex, AUDIT_TABLE)
    const run = (sql: string, bindings: readonly unknown[]): Promise<{ rows: Record<string, unknown>[] }> =>
      statements.run(sql, bindings)
    const BoundAuditLog = env.bind(AuditLog)
    this.audit = Object.freeze({
      record: (action: string, event?: AuditEvent) =>
        recordAuditEvent(run, BoundAuditLog, context.audit, action, event),
    })
  }

  /**
   * The repository of a model within this scope.
   *
   * @example
   * ```ts
   * const droplet = await scope.repo(Droplet).getById(id)
   * ```
   */
  repo<C extends typeof BaseModel>(modelClass: C): ScopedRepository<InstanceType<C>, C> {
    let repo = this.#repos.get(modelClass)
    if (repo === undefined) {
      repo = new Repository(this.#env.bind(modelClass), this.#context, this.#trx ?? this.#env.knex, this.#env.cursors)
      this.#repos.set(modelClass, repo)
    }
    return repo as unknown as ScopedRepository<InstanceType<C>, C>
  }

  /**
   * A signed, opaque token of everything committed so far (the primary's WAL position), for the next request of the
   * same actor, on any instance: pass it as `db.scope(actor, meta, { after: token })` and that scope reads what this
   * one wrote, from a replica that has replayed it or from the primary. Take it after the write has committed (not
   * inside `scope.transaction()`); hand it to the client in a header or a cookie. Costs one round trip. Instances must
   * share the signing secrets (`pagination.cursorSecrets` or `encryption`).
   *
   * @example
   * ```ts
   * await scope.repo(Droplet).create({ name: 'web-1', region: 'nyc3', size: 's-1vcpu-2gb' })
   * res.set('x-consistency-token', await scope.consistencyToken())
   * ```
   */
  async consistencyToken(): Promise<string> {
    if (this.#trx !== undefined) {
      throw new ValidationError('consistencyToken() is taken after the transaction has committed.', [
        { field: 'consistencyToken', message: 'not inside a transaction' },
      ])
    }
    let position: string
    try {
      position = await primaryPosition(this.#env.knex)
    } catch (error) {
      throw toDataError(error)
    }
    return encodeConsistencyToken(this.#env.cursors, this.actor?.id ?? SYSTEM_ROLE, position)
  }

  /**
   * Runs `work` in one transaction with a scope of the same actor: everything commits together or nothing does.
   * Nested calls use a savepoint.
   *
   * @example
   * ```ts
   * await scope.transaction(async (tx) => {
   *   const droplet = await tx.repo(Droplet).create({ name: 'web-1', region: 'nyc3', size: 's-1vcpu-2gb' })
   *   await tx.repo(Droplet).update(droplet.id, { status: 'active' })
   * })
   * ```
   */
  async transaction<T>(work: (tx: Scope) => Promise<T>): Promise<T> {
    const runner = this.#trx ?? this.#env.knex
    const rlsSql = this.#trx === undefined ? this.#context.rlsSql : undefined
    try {
      return await runner.transaction(async (trx) => {
        if (rlsSql !== undefined) await trx.raw(rlsSql)
        return work(new Scope(this.#env, this.actor, this.reason, this.meta, trx, this.#options, this.#tablesWritten))
      })
    } catch (error) {
      throw toDataError(error)
    } finally {
      // The outermost transaction has ended: what it wrote (if it committed) is what the actor reads next.
      if (this.#trx === undefined) {
        settleWrites(this.#env, this.actor?.id ?? SYSTEM_ROLE, [...this.#tablesWritten])
        this.#tablesWritten.clear()
      }
    }
  }
}

/**
 * Checks an actor and makes its scope: a UUID id, a role name, not inactive, never the system role.
 *
 * @internal
 */
export function createScope(env: ScopeEnvironment, actor: unknown, meta: unknown, options?: unknown): Scope {
  if (typeof actor !== 'object' || actor === null) {
    throw new ValidationError('An actor must be an object with id and role.', [
      { field: 'actor', message: 'is required' },
    ])
  }
  const { id, role, isActive } = actor as Partial<Actor>
  if (!isUuid(id)) {
    throw new ValidationError('actor.id must be a UUID.', [{ field: 'actor.id', message: 'must be a UUID' }])
  }
  if (typeof role !== 'string' || !/^[a-z][a-z0-9_-]{0,31}$/.test(role) || role === SYSTEM_ROLE) {
    throw new ValidationError('actor.role must be a role name.', [
      { field: 'actor.role', message: 'must be a role name' },
    ])
  }
  if (isActive === false) throw new ForbiddenError('act as', 'an inactive user')
  return new Scope(
    env,
    Object.freeze({ id: id.toLowerCase(), role }),
    undefined,
    checkMeta(meta),
    undefined,
    checkOptions(options),
  )
}

/** @internal */
export function createSystemScope(env: ScopeEnvironment, reason: unknown, options?: unknown): Scope {
  if (typeof reason !== 'string' || reason.trim().length === 0 || reason.length > 500) {
    throw new ValidationError('db.system() needs a reason of 1 to 500 characters.', [
      { field: 'reason', message: 'must be a non-empty string' },
    ])
  }
  return new Scope(env, undefined, reason, {}, undefined, checkOptions(options))
}

/**
 * Writes that have settled outside a transaction (or with the outermost one): the cache drops the tables' values, and
 * the actor's reads need what it wrote. A transaction with no noted write still counts for read-your-writes: raw SQL
 * in it (`tx.knex`) may have written.
 */
function settleWrites(env: ScopeEnvironment, actor: string, tables: readonly string[]): void {
  if (tables.length > 0) env.cache?.invalidate(tables)
  env.replicas?.noteWrite(actor)
}

function checkOptions(options: unknown): ScopeOptions {
  if (options === undefined) return {}
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new ValidationError('Scope options must be an object.', [{ field: 'options', message: 'must be an object' }])
  }
  for (const key of Object.keys(options)) {
    if (key !== 'consistency' && key !== 'after') {
      throw new ValidationError(`${key} is not a scope option.`, [{ field: key, message: 'is not a scope option' }])
    }
  }
  const { consistency } = options as { consistency?: unknown }
  if (
    consistency !== undefined &&
    consistency !== 'session' &&
    consistency !== 'primary' &&
    consistency !== 'replica'
  ) {
    throw new ValidationError("consistency must be 'session', 'primary' or 'replica'.", [
      { field: 'consistency', message: "must be 'session', 'primary' or 'replica'" },
    ])
  }
  const { after } = options as { after?: unknown }
  if (after !== undefined && (typeof after !== 'string' || after.length === 0 || after.length > 4_096)) {
    throw new InvalidCursorError('Invalid consistency token.')
  }
  return Object.freeze({
    ...(consistency === undefined ? {} : { consistency }),
    ...(after === undefined ? {} : { after }),
  })
}

function checkMeta(meta: unknown): RequestMeta {
  if (meta === undefined) return {}
  if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) {
    throw new ValidationError('Request metadata must be an object.', [{ field: 'meta', message: 'must be an object' }])
  }
  const out: Record<string, string> = {}
  for (const [key, value] of Object.entries(meta)) {
    if (value === undefined) continue
    // A NUL or a lone surrogate cannot be stored in the audit row's jsonb: refuse it here, naming the field.
    if (typeof value !== 'string' || value.length > 1_000 || !isStorableText(value)) {
      throw new ValidationError(`meta.${key} must be a string of at most 1000 characters.`, [
        { field: `meta.${key}`, message: 'must be a short string' },
      ])
    }
    // An own property whatever the key (`__proto__` included), never a change of the object's prototype.
    Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true })
  }
  return Object.freeze(out)
}
