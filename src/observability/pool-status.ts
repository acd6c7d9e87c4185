import type { Knex } from 'knex'

/**
 * The pool at the time of the check.
 *
 * @example
 * ```ts
 * const { used, max, pendingAcquires }: PoolStatus = (await db.health()).pool
 * ```
 */
export interface PoolStatus {
  readonly min: number
  readonly max: number
  readonly used: number
  readonly free: number
  readonly pendingAcquires: number
  readonly pendingCreates: number
}

/** The part of knex's (tarn) pool the figures are read from. */
interface TarnPool {
  numUsed(): number
  numFree(): number
  numPendingAcquires(): number
  numPendingCreates(): number
}

/**
 * The pool's figures, read from knex's pool without waiting for anything (zeros before the pool exists).
 *
 * @internal
 */
export function poolStatus(knex: Knex, bounds: { readonly min: number; readonly max: number }): PoolStatus {
  const pool = (knex.client as { pool?: TarnPool }).pool
  return {
    min: bounds.min,
    max: bounds.max,
    used: pool?.numUsed() ?? 0,
    free: pool?.numFree() ?? 0,
    pendingAcquires: pool?.numPendingAcquires() ?? 0,
    pendingCreates: pool?.numPendingCreates() ?? 0,
  }
}
