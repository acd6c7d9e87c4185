import type { Knex } from 'knex'
import * as audit0002 from './0002-audit.js'

/**
 * The audit hash chain, hardened. `0002_audit` installed it; this migration replaces its functions:
 *
 * - No chain state comes from anything a session can set. Each chained row's trigger locks the head row
 *   (`wincloud_audit_chain`) and continues from it, or from the last row chained earlier in the same statement (the
 *   rows a statement inserted before this one are visible to its row triggers); the statement trigger then moves the
 *   head to the last chained row, read from `audit_logs`. 0002 passed that state through a transaction-local setting
 *   that any session could set, which let the application's role move the head anywhere.
 * - The `security definer` functions run with `search_path = pg_catalog, pg_temp` and name our objects with the
 *   schema the migration ran in, so a temporary table cannot shadow them. They clear `app.role` while they run: under
 *   forced row-level security the owner sees every audit row, whatever the scoped transaction that fired them.
 * - Only the owner may execute the chain's functions (their execute right is revoked from PUBLIC).
 * - The append-only trigger's function (not a definer) also runs with `search_path = pg_catalog, pg_temp`, so a
 *   session's temporary `pg_class` cannot pass it off as the owner's purge.
 * - `wincloud_audit_enable_chain()` anchors the rows that predate the chain: their count and a digest of them
 *   (`wincloud_audit_digest`, a rolling sha256 over their canonical encodings with sequence number 0, in
 *   `created_at, id` order), kept in the head row (`prechain_count`, `prechain_digest`), so `verify()` catches an
 *   unchained row added, removed or changed later. `wincloud_audit_purge(cutoff)` keeps that anchor in step with the
 *   rows it leaves, and refuses to run while the unchained rows no longer match it (it would launder the change).
 *
 * `down` puts back the 0002 functions and triggers exactly as 0002 made them.
 */

const quoteIdent = (name: string): string => `"${name.replaceAll('"', '""')}"`

async function schemaOf(knex: Knex): Promise<string> {
  const { rows } = await knex.raw<{ rows: { schema: string | null }[] }>('select current_schema() as schema')
  const schema = rows[0]?.schema
  if (schema === null || schema === undefined) throw new Error('0004_audit_chain_hardening: no current schema')
  return quoteIdent(schema)
}

/** The schema-qualified name of a relation as a string literal, for a `::regclass` cast. */
const regclass = (s: string, name: string): string => `'${`${s}.${name}`.replaceAll("'", "''")}'::regclass`

const ZERO_HASH = `'\\x${'00'.repeat(32)}'::bytea`

/** The canonical encoding of an unchained row, as the pre-chain digest takes it: sequence number 0. */
const prechainDigest = (s: string, where: string): string => `
  select count(*), coalesce(${s}.wincloud_audit_digest(pg_catalog.convert_to(${s}.wincloud_audit_canonical(0, a.id,
      a.created_at, a.actor_id, a.actor_role, a.action, a.entity_type, a.entity_id, a.changes, a.metadata), 'UTF8')
      order by a.created_at, a.id), ${ZERO_HASH})
    from ${s}.audit_logs a where ${where}`

/**
 * Around the triggers' reads of `audit_logs`: under forced row-level security the owner is held to the policies too,
 * and a scoped transaction's policies may hide rows of the chain (even the ones its own statement just wrote, for a
 * role that may not read the audit log). An empty `app.role` shows every row. (A `set` clause on the function would
 * be simpler, but PostgreSQL lets only a superuser put a custom setting there.) An error in between rolls the setting
 * back with the transaction, or with the savepoint it happened in.
 */
const SEE_ALL = `if scoped <> '' then perform pg_catalog.set_config('app.role', '', true); end if;`
const SEE_SCOPED = `if scoped <> '' then perform pg_catalog.set_config('app.role', scoped, true); end if;`

// eslint-disable-next-line max-lines-per-function -- the migration's SQL, one statement per entry: it reads as the SQL it installs
function hardened(s: string): string[] {
  return [
    `create or replace function ${s}.wincloud_audit_digest_step(state bytea, canonical bytea) returns bytea
     language sql immutable strict parallel safe set search_path = pg_catalog, pg_temp as $$
       select pg_catalog.sha256(state operator(pg_catalog.||) canonical)
     $$`,
    `create aggregate ${s}.wincloud_audit_digest(bytea) (
       sfunc = ${s}.wincloud_audit_digest_step, stype = bytea, initcond = '\\x${'00'.repeat(32)}')`,
    `alter table ${s}.wincloud_audit_chain
       add column prechain_count bigint not null default 0,
       add column prechain_digest bytea not null default ${ZERO_HASH}`,
    // Per row, one statement: lock the head and continue from it, or from the last row this statement chained
    // (rows after the head are this statement's own: any other writer waits for the head lock). Under READ
    // COMMITTED, a lock that had to wait re-reads the head as committed, and the lateral lookup follows it.
    `create or replace function ${s}.wincloud_audit_chain_row() returns trigger language plpgsql security definer
     set search_path = pg_catalog, pg_temp as $$
     declare
       prev bytea;
       scoped text := current_setting('app.role', true);
     begin
       ${SEE_ALL}
       select coalesce(l.chain_seq, h.last_seq) + 1, coalesce(l.row_hash, h.last_hash) into strict new.chain_seq, prev
         from (select c.last_seq, c.last_hash from ${s}.wincloud_audit_chain c where c.id for update) h
         left join lateral (select a.chain_seq, a.row_hash from ${s}.audit_logs a where a.chain_seq > h.last_seq
                            order by a.chain_seq desc limit 1) l on true;
       ${SEE_SCOPED}
       new.prev_hash := prev;
       new.row_hash := sha256(prev || convert_to(${s}.wincloud_audit_canonical(new.chain_seq, new.id, new.created_at,
         new.actor_id, new.actor_role, new.action, new.entity_type, new.entity_id, new.changes, new.metadata), 'UTF8'));
       return new;
     end $$`,
    // Per statement: the head takes the last chained row (held locked by this transaction since its first row).
    `create or replace function ${s}.wincloud_audit_chain_head() returns trigger language plpgsql security definer
     set search_path = pg_catalog, pg_temp as $$
     declare
       scoped text := current_setting('app.role', true);
     begin
       ${SEE_ALL}
       update ${s}.wincloud_audit_chain c set last_seq = l.chain_seq, last_hash = l.row_hash
         from (select a.chain_seq, a.row_hash from ${s}.audit_logs a where a.chain_seq is not null
               order by a.chain_seq desc limit 1) l
         where c.id and l.chain_seq > c.last_seq;
       ${SEE_SCOPED}
       return null;
     end $$`,
    `create or replace function ${s}.wincloud_audit_enable_chain() returns timestamptz language plpgsql
     set search_path = pg_catalog, pg_temp as $$
     declare
       started timestamptz;
       n bigint;
       digest bytea;
     begin
       -- No insert is in flight while the triggers go in, and the start is taken after they exist: every row
       -- written after enabled_at went through the chain, and every row written before it is anchored.
       lock table ${s}.audit_logs in share row exclusive mode;
       select c.enabled_at into started from ${s}.wincloud_audit_chain c where c.id for update;
       if not exists (select from pg_trigger where tgname = 'wincloud_audit_logs_chain_row'
                      and tgrelid = ${regclass(s, 'audit_logs')}) then
         create trigger wincloud_audit_logs_chain_row before insert on ${s}.audit_logs
           for each row execute function ${s}.wincloud_audit_chain_row();
         create trigger wincloud_audit_logs_chain_head after insert on ${s}.audit_logs
           for each statement execute function ${s}.wincloud_audit_chain_head();
       end if;
       if started is null then
         ${prechainDigest(s, 'a.chain_seq is null')} into n, digest;
         started := clock_timestamp();
         update ${s}.wincloud_audit_chain c set enabled_at = started, prechain_count = n, prechain_digest = digest
           where c.id;
       end if;
       return started;
     end $$`,
    `create or replace function ${s}.wincloud_audit_purge(cutoff timestamptz)
     returns table (deleted bigint, anchor_seq bigint) language plpgsql
     set search_path = pg_catalog, pg_temp as $$
     declare
       first_seq bigint;
       anchor bytea;
       n bigint;
       head ${s}.wincloud_audit_chain;
       pre_n bigint;
       pre_digest bytea;
     begin
       select * into strict head from ${s}.wincloud_audit_chain c where c.id for update;
       if head.enabled_at is not null then
         ${prechainDigest(s, 'a.chain_seq is null')} into pre_n, pre_digest;
         if pre_n <> head.prechain_count or pre_digest <> head.prechain_digest then
           raise exception 'audit_logs: the rows without a chain sequence number no longer match the chain''s anchor'
             using errcode = 'data_corrupted',
                   hint = 'Run wincloud-data audit verify; purging now would hide the change.';
         end if;
       end if;
       select min(a.chain_seq) into first_seq from ${s}.audit_logs a
         where a.chain_seq is not null and a.created_at >= cutoff;
       if first_seq is null then
         first_seq := head.last_seq + 1;
         anchor := head.last_hash;
       else
         select a.prev_hash into anchor from ${s}.audit_logs a where a.chain_seq = first_seq;
       end if;
       perform set_config('wincloud.audit_purge', 'on', true);
       delete from ${s}.audit_logs a where (a.chain_seq is null and a.created_at < cutoff) or a.chain_seq < first_seq;
       get diagnostics n = row_count;
       perform set_config('wincloud.audit_purge', '', true);
       update ${s}.wincloud_audit_chain c set anchor_seq = first_seq - 1, anchor_hash = anchor
         where c.id and c.anchor_seq < first_seq - 1;
       if head.enabled_at is not null then
         ${prechainDigest(s, 'a.chain_seq is null')} into pre_n, pre_digest;
         update ${s}.wincloud_audit_chain c set prechain_count = pre_n, prechain_digest = pre_digest where c.id;
       end if;
       return query select n, first_seq - 1;
     end $$`,
    ...[
      'wincloud_audit_chain_row()',
      'wincloud_audit_chain_head()',
      'wincloud_audit_enable_chain()',
      'wincloud_audit_purge(timestamptz)',
      'wincloud_audit_digest_step(bytea, bytea)',
    ].map((f) => `revoke execute on function ${s}.${f} from public`),
    `revoke execute on function ${s}.wincloud_audit_digest(bytea) from public`,
    // The append-only trigger reads pg_class to tell the owner's purge apart: with pg_temp last, a session's
    // temporary table named pg_class cannot answer for it.
    `alter function ${s}.wincloud_audit_append_only() set search_path = pg_catalog, pg_temp`,
  ]
}

export async function up(knex: Knex): Promise<void> {
  const s = await schemaOf(knex)
  await knex.raw(`lock table ${s}.audit_logs in share row exclusive mode`)
  for (const sql of hardened(s)) await knex.raw(sql)
  // A chain enabled before this migration: anchor the unchained rows written before it started, as they are now.
  await knex.raw(`
    update ${s}.wincloud_audit_chain c set prechain_count = d.n, prechain_digest = d.digest
    from (${prechainDigest(s, 'a.chain_seq is null and a.created_at < (select enabled_at from ' + s + '.wincloud_audit_chain where id)')}) d(n, digest)
    where c.id and c.enabled_at is not null`)
}

/** Puts back the 0002 functions and triggers, from 0002's own text (0002 created them with the schema on the search path). */
export async function down(knex: Knex): Promise<void> {
  const s = await schemaOf(knex)
  const { rows } = await knex.raw<{ rows: { enabled: boolean }[] }>(
    `select exists (select from pg_trigger where tgname = 'wincloud_audit_logs_chain_row'
                    and tgrelid = ${regclass(s, 'audit_logs')}) as enabled`,
  )
  const enabled = rows[0]?.enabled === true
  await knex.raw(`drop trigger if exists wincloud_audit_logs_chain_row on ${s}.audit_logs`)
  await knex.raw(`drop trigger if exists wincloud_audit_logs_chain_head on ${s}.audit_logs`)
  await knex.raw(`alter function ${s}.wincloud_audit_append_only() reset search_path`)
  // Dropped and made again, so their privileges are 0002's defaults too.
  await knex.raw(`drop function if exists ${s}.wincloud_audit_purge(timestamptz)`)
  await knex.raw(`drop function if exists ${s}.wincloud_audit_enable_chain()`)
  await knex.raw(`drop function if exists ${s}.wincloud_audit_chain_head()`)
  await knex.raw(`drop function if exists ${s}.wincloud_audit_chain_row()`)
  await knex.raw(`drop aggregate if exists ${s}.wincloud_audit_digest(bytea)`)
  await knex.raw(`drop function if exists ${s}.wincloud_audit_digest_step(bytea, bytea)`)
  await knex.raw(
    `alter table ${s}.wincloud_audit_chain drop column if exists prechain_count, drop column if exists prechain_digest`,
  )
  for (const sql of [audit0002.CHAIN_ROW, audit0002.CHAIN_HEAD, audit0002.ENABLE_CHAIN, audit0002.PURGE])
    await knex.raw(sql)
  if (enabled) {
    await knex.raw(`
      create trigger wincloud_audit_logs_chain_row before insert on audit_logs
        for each row execute function wincloud_audit_chain_row()`)
    await knex.raw(`
      create trigger wincloud_audit_logs_chain_head after insert on audit_logs
        for each statement execute function wincloud_audit_chain_head()`)
  }
}
