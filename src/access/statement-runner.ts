import type { Knex } from 'knex'
import { lostOnArrival, toDataError } from '../errors/driver-errors.js'
import { UnavailableError } from '../errors/index.js'
import { AUDIT_TABLE } from '../audit/recorder.js'
import type { ScopeContext } from './enforce.js'
import { LOST_READ_RETRIES } from './connection-guard.js'
import { withPinnedConnection } from './knex-internals.js'

const PLAIN_SELECT = /^\s*select\b/i

/** A read-through of the scope's cache for one model: `kind` and `parts` key the value. @internal */
export type CachedRead = <T>(
  kind: 'row' | 'count',
  parts: readonly unknown[],
  load: () => Promise<{ value: T; cacheable: boolean }>,
) => Promise<T>

/**
 * How one repository's statements run: on the scope's knex or transaction, with row-level security settings when
 * the scope has them; reads routed to a replica by the scope's consistency (and back to the primary when the replica
 * fails on the connection); through the read cache when there is one. Driver errors become DataErrors here.
 *
 * @internal
 */
export class StatementRunner {
  readonly #context: ScopeContext
  readonly #primary: Knex | Knex.Transaction
  readonly #table: string

  constructor(context: ScopeContext, primary: Knex | Knex.Transaction, table: string) {
    this.#context = context
    this.#primary = primary
    this.#table = table
  }

  /** Where the next read goes: a replica by the scope's consistency, or the primary (always inside a transaction). */
  reader(): Knex | Knex.Transaction {
    return (this.#context.inTransaction ? undefined : this.#context.reader?.()) ?? this.#primary
  }

  /** Whether `runner` is the primary (what it reads may be cached). */
  isPrimary(runner: Knex | Knex.Transaction): boolean {
    return runner === this.#primary
  }

  /**
   * The scope's read-through cache for this model, when there is one: not inside a transaction (it must see its own
   * uncommitted writes), and not for the audit log (every audited write appends to it).
   */
  cached(): CachedRead | undefined {
    const cache = this.#context.cache
    const table = this.#table
    if (cache === undefined || this.#context.inTransaction || table === AUDIT_TABLE) return undefined
    return (kind, parts, load) => cache.cache.readThrough(kind, table, cache.actor, parts, load)
  }

  /** Runs one statement on `runner` (the primary by default); a replica that fails on the connection is left for the primary. */
  async run<R>(sql: string, bindings: readonly unknown[], runner = this.#primary): Promise<{ rows: R[] }> {
    if (runner === this.#primary) return this.#runOn<R>(runner, sql, bindings)
    try {
      return await this.#runOn<R>(runner, sql, bindings)
    } catch (error) {
      // A replica that fails on the connection is taken out of rotation, and the read goes to the primary.
      if (!(error instanceof UnavailableError)) throw error
      this.#context.readerFailed?.(runner as Knex, error)
      return this.#runOn<R>(this.#primary, sql, bindings)
    }
  }

  /**
   * Runs one read (never a write) as {@link run} does; outside a transaction, a read whose connection was lost as it
   * was sent (`lostOnArrival`) runs again, while that is what happens (at most `LOST_READ_RETRIES` times). That is what happens when the pool hands out a connection whose end
   * it has not heard of yet (a backend killed while idle, a server restart): the read got no result, the pool has now
   * discarded the connection, and the retry runs on a fresh one. A read that had been running longer when its
   * connection died fails (it may be a runaway query an administrator ended). Inside a transaction nothing is
   * retried: the transaction is gone with its connection.
   */
  async read<R>(sql: string, bindings: readonly unknown[], runner = this.#primary): Promise<{ rows: R[] }> {
    for (let retries = 0; ; retries++) {
      try {
        return await this.run<R>(sql, bindings, runner)
      } catch (error) {
        if (this.#context.inTransaction || !(error instanceof UnavailableError) || !lostOnArrival(error.cause)) {
          throw error
        }
        // knex's pool already retried a plain SELECT it ran itself (see `retryLostReads`): not twice.
        if (retries >= LOST_READ_RETRIES || (this.#context.rlsSql === undefined && PLAIN_SELECT.test(sql))) throw error
      }
    }
  }

  /**
   * With row-level security outside a transaction, the statement runs in a transaction of its own that opens with one
   * message (BEGIN, the scoped role and the actor settings), then the statement, then COMMIT.
   */
  async #runOn<R>(runner: Knex | Knex.Transaction, sql: string, bindings: readonly unknown[]): Promise<{ rows: R[] }> {
    const context = this.#context
    try {
      if (context.rlsSql === undefined || context.inTransaction) {
        return await runner.raw<{ rows: R[] }>(sql, bindings as Knex.RawBinding[])
      }
      const rlsSql = context.rlsSql
      return await withPinnedConnection(runner as Knex, async (connection) => {
        // BEGIN, the scoped role and the actor settings go as one message; then the statement; then COMMIT.
        try {
          await connection.send(`begin; ${rlsSql}`)
          const result = await connection.raw<{ rows: R[] }>(sql, bindings)
          await connection.send('commit')
          return result
        } catch (error) {
          // A connection whose rollback failed may still be in the scoped transaction: it never serves again.
          await connection.send('rollback').catch((failed: unknown) => connection.discard(failed))
          throw error
        }
      })
    } catch (error) {
      throw toDataError(error)
    }
  }
}
