import { createHash } from 'node:crypto'
import type { Knex } from 'knex'

/**
 * The first problem `db.audit.verify()` found in the hash chain:
 *
 * - `modified`: the row's content no longer matches its hash, or its hash no longer matches the one the next row
 *   recorded (it was edited, and perhaps re-hashed), or the chain head records another hash for the last row; or a
 *   row from before the chain was changed;
 * - `deleted`: rows are missing before this one (a gap in the sequence) or at the end of the chain; or rows from
 *   before the chain are missing;
 * - `inserted`: a row the chain does not account for: written after the chain started without going through it
 *   (out of band), claiming a sequence number at or before the anchor, past the chain's head, or added to the rows
 *   from before the chain.
 *
 * @example
 * ```ts
 * const { ok, problem } = await db.audit.verify()
 * if (!ok) console.error(`audit log tampered: ${problem?.kind} at row ${problem?.id ?? 'end'}`)
 * ```
 */
export interface AuditChainProblem {
  readonly kind: 'modified' | 'deleted' | 'inserted'
  /**
   * The row that was modified or inserted, or the first row after a gap; null when rows are missing at the end, and
   * when the rows from before the chain no longer match their anchor (a count and a digest, which name no row).
   */
  readonly id: string | null
  /** Its sequence number in the chain (a bigint as a string), null for an out-of-band row. */
  readonly seq: string | null
  /** What is wrong, in words (no row content). */
  readonly message: string
}

/**
 * The result of `db.audit.verify()`.
 *
 * @example
 * ```ts
 * const report: AuditVerification = await db.audit.verify()
 * console.log(`${report.checked} rows checked`, report.ok ? 'intact' : report.problem)
 * ```
 */
export interface AuditVerification {
  /** True when the chain is on and intact, or off (then `enabled` is false and nothing was checked). */
  readonly ok: boolean
  /** Whether the hash chain is on. */
  readonly enabled: boolean
  /** Chained rows checked. */
  readonly checked: number
  /** The sequence number verification started after (0, or where the last retention purge left the chain). */
  readonly anchorSeq: string
  /** The first problem found, when `ok` is false. */
  readonly problem?: AuditChainProblem
}

interface ChainRow {
  seq: string
  id: string
  created_at: string
  actor_id: string | null
  actor_role: string | null
  action: string
  entity_type: string | null
  entity_id: string | null
  changes: string
  metadata: string
  prev_hash: Buffer
  row_hash: Buffer
}

const field = (value: string | null): string => (value === null ? '-' : `${Buffer.byteLength(value)}:${value}`)

/**
 * The canonical encoding of an audit row, byte for byte what `wincloud_audit_canonical()` computes in the database
 * when the row is written: each field on its own line, variable-length ones prefixed by their byte length.
 *
 * @internal
 */
export function canonicalAuditRow(row: Omit<ChainRow, 'prev_hash' | 'row_hash'>): string {
  return (
    'wincloud-audit-v1\n' +
    [
      row.seq,
      row.id,
      row.created_at,
      field(row.actor_id),
      field(row.actor_role),
      field(row.action),
      field(row.entity_type),
      field(row.entity_id),
      field(row.changes),
      field(row.metadata),
    ].join('\n')
  )
}

/** @internal */
export function chainHash(prev: Buffer, canonical: string): Buffer {
  return createHash('sha256').update(prev).update(canonical, 'utf8').digest()
}

const ROWS = `select chain_seq::text as seq, id::text as id,
  to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as created_at,
  actor_id::text as actor_id, actor_role, action, entity_type, entity_id, changes::text as changes,
  metadata::text as metadata, prev_hash, row_hash
  from audit_logs where chain_seq > ? order by chain_seq limit ?`

const PRECHAIN_ROWS = `select id::text as id, created_at::text as at,
  to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as created_at,
  actor_id::text as actor_id, actor_role, action, entity_type, entity_id, changes::text as changes,
  metadata::text as metadata
  from audit_logs where chain_seq is null and (created_at, id) > (?::timestamptz, ?::uuid)
  order by created_at, id limit ?`

interface Head {
  enabled_at: Date | null
  last_seq: string
  last_hash: Buffer
  anchor_seq: string
  anchor_hash: Buffer
  prechain_count: string
  prechain_digest: Buffer
}

/**
 * The count and digest of the rows without a chain sequence number, as `wincloud_audit_enable_chain()` anchors
 * them: a rolling sha256 over their canonical encodings (sequence number 0) in `created_at, id` order.
 */
async function prechainDigest(knex: Knex, batchSize: number): Promise<{ count: bigint; digest: Buffer }> {
  let digest: Buffer = Buffer.alloc(32)
  let count = 0n
  let after: [string, string] = ['-infinity', '00000000-0000-0000-0000-000000000000']
  for (;;) {
    const { rows } = await knex.raw<{ rows: (Omit<ChainRow, 'seq' | 'prev_hash' | 'row_hash'> & { at: string })[] }>(
      PRECHAIN_ROWS,
      [...after, batchSize],
    )
    for (const row of rows) {
      digest = chainHash(digest, canonicalAuditRow({ ...row, seq: '0' }))
      count += 1n
    }
    const last = rows.at(-1)
    if (last === undefined || rows.length < batchSize) break
    after = [last.at, last.id]
  }
  return { count, digest }
}

/**
 * Walks the chain from its anchor in sequence order, recomputing every hash in this process, and reports the first
 * row that was modified, deleted or inserted out of band; then checks that the head ends where the walk ended, and
 * that the rows without a sequence number are exactly the ones anchored when the chain started.
 *
 * @internal
 */
export async function verifyAuditChain(knex: Knex, options: VerifyOptions): Promise<AuditVerification> {
  // One snapshot for the head and every row: a writer that commits meanwhile is not mistaken for a row past the head.
  return knex.transaction((trx) => verifySnapshot(trx, options), { isolationLevel: 'repeatable read', readOnly: true })
}

type VerifyOptions = { batchSize: number; onProgress?: ((checked: number) => void) | undefined }

/** Where a walk of the chain ended: the last row verified (its hash and id), the next sequence number, the count. */
interface WalkEnd {
  readonly prev: Buffer
  readonly prevId: string | null
  readonly expected: bigint
  readonly checked: number
}

/** A problem found, with how many rows were verified before it. */
type Found = { readonly checked: number; readonly problem: AuditChainProblem }

async function verifySnapshot(knex: Knex, options: VerifyOptions): Promise<AuditVerification> {
  const head = (
    await knex.raw<{ rows: Head[] }>(
      `select enabled_at, last_seq::text as last_seq, last_hash, anchor_seq::text as anchor_seq, anchor_hash,
         prechain_count::text as prechain_count, prechain_digest
       from wincloud_audit_chain where id`,
    )
  ).rows[0]
  if (head === undefined || head.enabled_at === null) return { ok: true, enabled: false, checked: 0, anchorSeq: '0' }
  const anchorSeq = head.anchor_seq
  const walked = await walkChain(knex, head, options)
  const found =
    'problem' in walked
      ? walked
      : ((await checkHead(knex, head, walked)) ?? (await checkOutsideChain(knex, head, walked.checked, options)))
  if (found !== undefined)
    return { ok: false, enabled: true, checked: found.checked, anchorSeq, problem: found.problem }
  return { ok: true, enabled: true, checked: walked.checked, anchorSeq }
}

/** Walks the chain from its anchor in sequence order, recomputing every hash: the first row out of place, or the end. */
async function walkChain(knex: Knex, head: Head, options: VerifyOptions): Promise<WalkEnd | Found> {
  let prev = head.anchor_hash
  let prevId: string | null = null
  let expected = BigInt(head.anchor_seq) + 1n
  let checked = 0
  for (;;) {
    const { rows } = await knex.raw<{ rows: ChainRow[] }>(ROWS, [(expected - 1n).toString(), options.batchSize])
    for (const row of rows) {
      const seq = BigInt(row.seq)
      if (seq !== expected) {
        return {
          checked,
          problem: {
            kind: 'deleted',
            id: row.id,
            seq: row.seq,
            message: `rows ${expected}..${seq - 1n} of the chain are missing before this row`,
          },
        }
      }
      if (!row.prev_hash.equals(prev)) {
        return {
          checked,
          problem: {
            kind: 'modified',
            id: prevId ?? row.id,
            seq: (seq - (prevId === null ? 0n : 1n)).toString(),
            message:
              prevId === null
                ? 'the first row does not continue from the chain anchor'
                : 'the row was changed after it was written: the next row recorded another hash for it',
          },
        }
      }
      if (!chainHash(prev, canonicalAuditRow(row)).equals(row.row_hash)) {
        return {
          checked,
          problem: {
            kind: 'modified',
            id: row.id,
            seq: row.seq,
            message: 'the row was changed after it was written: its content does not match its hash',
          },
        }
      }
      prev = row.row_hash
      prevId = row.id
      expected = seq + 1n
      checked += 1
    }
    options.onProgress?.(checked)
    if (rows.length < options.batchSize) return { prev, prevId, expected, checked }
  }
}

/** The head must name the last row verified, no more and no less. */
async function checkHead(knex: Knex, head: Head, end: WalkEnd): Promise<Found | undefined> {
  const { prev, prevId, expected, checked } = end
  const lastSeq = expected - 1n
  const headSeq = BigInt(head.last_seq)
  if (lastSeq === headSeq && !prev.equals(head.last_hash)) {
    return {
      checked: Math.max(checked - 1, 0),
      problem: {
        kind: 'modified',
        id: prevId,
        seq: head.last_seq,
        message:
          prevId === null
            ? 'the chain head does not match its anchor'
            : 'the last row was changed after it was written: the chain head recorded another hash for it',
      },
    }
  }
  if (lastSeq < headSeq) {
    return {
      checked,
      problem: {
        kind: 'deleted',
        id: null,
        seq: null,
        message: `rows ${expected}..${head.last_seq} at the end of the chain are missing`,
      },
    }
  }
  if (lastSeq > headSeq) {
    const { rows } = await knex.raw<{ rows: { id: string }[] }>(
      'select id::text as id from audit_logs where chain_seq = ?',
      [(headSeq + 1n).toString()],
    )
    return {
      checked,
      problem: {
        kind: 'inserted',
        id: rows[0]?.id ?? null,
        seq: (headSeq + 1n).toString(),
        message: `the chain goes on past its head (row ${head.last_seq}): rows ${headSeq + 1n}..${lastSeq} are not accounted for by it`,
      },
    }
  }
  return undefined
}

/**
 * The rows outside the chain: none may claim a place at or before the anchor, none may have been written after the
 * chain started without going through it, and the rows from before the chain must be exactly the set anchored when
 * it started (less what purges removed).
 */
async function checkOutsideChain(
  knex: Knex,
  head: Head,
  checked: number,
  options: VerifyOptions,
): Promise<Found | undefined> {
  const anchorSeq = head.anchor_seq
  const below = await knex.raw<{ rows: { id: string; seq: string }[] }>(
    `select id::text as id, chain_seq::text as seq from audit_logs where chain_seq <= ? order by chain_seq limit 1`,
    [anchorSeq],
  )
  const early = below.rows[0]
  if (early !== undefined) {
    return {
      checked,
      problem: {
        kind: 'inserted',
        id: early.id,
        seq: early.seq,
        message: `the row claims a place in the chain at or before its anchor (row ${anchorSeq}), where no row can be`,
      },
    }
  }
  const outside = await knex.raw<{ rows: { id: string }[] }>(
    `select id::text as id from audit_logs where chain_seq is null and created_at >= ? order by created_at, id limit 1`,
    [head.enabled_at],
  )
  const stray = outside.rows[0]
  if (stray !== undefined) {
    return {
      checked,
      problem: {
        kind: 'inserted',
        id: stray.id,
        seq: null,
        message: 'the row was written after the chain started without going through it',
      },
    }
  }
  const pre = await prechainDigest(knex, options.batchSize)
  const anchored = BigInt(head.prechain_count)
  if (pre.count !== anchored || !pre.digest.equals(head.prechain_digest)) {
    const kind = pre.count > anchored ? 'inserted' : pre.count < anchored ? 'deleted' : 'modified'
    return {
      checked,
      problem: {
        kind,
        id: null,
        seq: null,
        message:
          `the ${pre.count} rows without a chain sequence number do not match the ${anchored} anchored when the ` +
          `chain started: rows were ${kind === 'modified' ? 'changed or replaced' : kind} out of band`,
      },
    }
  }
  return undefined
}
