import type { Knex } from 'knex'

/**
 * The audit log's guarantees, enforced by the database itself:
 *
 * - `wincloud_uuidv7()`: time-ordered ids made in SQL, the default id of audit rows written by set-based
 *   statements (one audit row per changed row of a bulk update, in the same statement).
 * - Append-only: triggers refuse UPDATE, DELETE and TRUNCATE on `audit_logs` for every role, the table's owner
 *   included. The one exception is `wincloud_audit_purge(cutoff)`, the retention operation, and only for a
 *   role that owns the table.
 * - The optional hash chain: `wincloud_audit_chain` holds the head; `wincloud_audit_enable_chain()` installs the
 *   triggers that give each new row its sequence number, the previous row's hash and its own hash. Without it,
 *   inserts pay nothing.
 * - Indexes for the audit queries: by entity, by actor, by action, by time; each ends in `created_at, id`, the
 *   keyset order of audit pages.
 */

const CANONICAL = `
create or replace function wincloud_audit_canonical(
  seq bigint, id uuid, created_at timestamptz, actor_id uuid, actor_role text, action text,
  entity_type text, entity_id text, changes jsonb, metadata jsonb
) returns text language sql immutable parallel safe set search_path = pg_catalog as $$
  select 'wincloud-audit-v1' || chr(10) || concat_ws(chr(10),
    seq::text,
    id::text,
    to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    coalesce(octet_length(actor_id::text) || ':' || actor_id::text, '-'),
    coalesce(octet_length(actor_role) || ':' || actor_role, '-'),
    octet_length(action) || ':' || action,
    coalesce(octet_length(entity_type) || ':' || entity_type, '-'),
    coalesce(octet_length(entity_id) || ':' || entity_id, '-'),
    octet_length(changes::text) || ':' || changes::text,
    octet_length(metadata::text) || ':' || metadata::text)
$$`

/** `wincloud_audit_chain_row()` as this migration creates it; 0004's rollback puts it back. @internal */
export const CHAIN_ROW = `
    create or replace function wincloud_audit_chain_row() returns trigger language plpgsql security definer
    set search_path = pg_catalog, public as $$
    declare
      state text := current_setting('wincloud.audit_chain', true);
      seq bigint;
      prev bytea;
    begin
      if state is null or state = '' then
        select c.last_seq, c.last_hash into seq, prev from wincloud_audit_chain c where c.id for update;
      else
        seq := split_part(state, ':', 1)::bigint;
        prev := decode(split_part(state, ':', 2), 'hex');
      end if;
      new.chain_seq := seq + 1;
      new.prev_hash := prev;
      new.row_hash := sha256(prev || convert_to(wincloud_audit_canonical(new.chain_seq, new.id, new.created_at,
        new.actor_id, new.actor_role, new.action, new.entity_type, new.entity_id, new.changes, new.metadata), 'UTF8'));
      perform set_config('wincloud.audit_chain', new.chain_seq::text || ':' || encode(new.row_hash, 'hex'), true);
      return new;
    end $$`

/** `wincloud_audit_chain_head()` as this migration creates it; 0004's rollback puts it back. @internal */
export const CHAIN_HEAD = `
    create or replace function wincloud_audit_chain_head() returns trigger language plpgsql security definer
    set search_path = pg_catalog, public as $$
    declare
      state text := current_setting('wincloud.audit_chain', true);
    begin
      if state is not null and state <> '' then
        update wincloud_audit_chain set last_seq = split_part(state, ':', 1)::bigint,
          last_hash = decode(split_part(state, ':', 2), 'hex')
        where id and last_seq is distinct from split_part(state, ':', 1)::bigint;
      end if;
      return null;
    end $$`

/** `wincloud_audit_enable_chain()` as this migration creates it; 0004's rollback puts it back. @internal */
export const ENABLE_CHAIN = `
    create or replace function wincloud_audit_enable_chain() returns timestamptz language plpgsql as $$
    declare
      started timestamptz;
    begin
      -- No insert is in flight while the triggers go in, and the start is taken after they exist: every row
      -- written after enabled_at went through the chain.
      lock table audit_logs in share row exclusive mode;
      select enabled_at into started from wincloud_audit_chain where id for update;
      if not exists (select from pg_trigger where tgname = 'wincloud_audit_logs_chain_row'
                     and tgrelid = 'audit_logs'::regclass) then
        create trigger wincloud_audit_logs_chain_row before insert on audit_logs
          for each row execute function wincloud_audit_chain_row();
        create trigger wincloud_audit_logs_chain_head after insert on audit_logs
          for each statement execute function wincloud_audit_chain_head();
      end if;
      if started is null then
        started := clock_timestamp();
        update wincloud_audit_chain set enabled_at = started where id;
      end if;
      return started;
    end $$`

/** `wincloud_audit_purge(cutoff)` as this migration creates it; 0004's rollback puts it back. @internal */
export const PURGE = `
    create or replace function wincloud_audit_purge(cutoff timestamptz)
    returns table (deleted bigint, anchor_seq bigint) language plpgsql as $$
    declare
      first_seq bigint;
      anchor bytea;
      n bigint;
    begin
      perform 1 from wincloud_audit_chain c where c.id for update;
      select min(a.chain_seq) into first_seq from audit_logs a where a.chain_seq is not null and a.created_at >= cutoff;
      if first_seq is null then
        select c.last_seq + 1, c.last_hash into first_seq, anchor from wincloud_audit_chain c where c.id;
      else
        select a.prev_hash into anchor from audit_logs a where a.chain_seq = first_seq;
      end if;
      perform set_config('wincloud.audit_purge', 'on', true);
      delete from audit_logs a where (a.chain_seq is null and a.created_at < cutoff) or a.chain_seq < first_seq;
      get diagnostics n = row_count;
      perform set_config('wincloud.audit_purge', '', true);
      update wincloud_audit_chain c set anchor_seq = first_seq - 1, anchor_hash = anchor
        where c.id and c.anchor_seq < first_seq - 1;
      return query select n, first_seq - 1;
    end $$`

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    create or replace function wincloud_uuidv7() returns uuid language sql volatile parallel safe as $$
      select encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) placing
        substring(int8send(floor(extract(epoch from clock_timestamp()) * 1000)::bigint) from 3) from 1 for 6),
        52, 1), 53, 1), 'hex')::uuid
    $$`)

  await knex.raw(`alter table audit_logs alter column id set default wincloud_uuidv7()`)
  await knex.raw(
    `alter table audit_logs add column chain_seq bigint, add column prev_hash bytea, add column row_hash bytea`,
  )
  await knex.raw(`create unique index audit_logs_chain_seq_unique on audit_logs (chain_seq)`)
  await knex.raw(`drop index audit_logs_entity_index`)
  await knex.raw(`drop index audit_logs_actor_index`)
  await knex.raw(`create index audit_logs_entity_index on audit_logs (entity_type, entity_id, created_at, id)`)
  await knex.raw(`create index audit_logs_actor_index on audit_logs (actor_id, created_at, id)`)
  await knex.raw(`create index audit_logs_action_index on audit_logs (action, created_at, id)`)
  await knex.raw(`create index audit_logs_created_at_index on audit_logs (created_at, id)`)

  // Append-only, for every role. DELETE and TRUNCATE pass only inside wincloud_audit_purge() run by an owner.
  await knex.raw(`
    create or replace function wincloud_audit_append_only() returns trigger language plpgsql as $$
    begin
      if tg_op in ('DELETE', 'TRUNCATE')
         and current_setting('wincloud.audit_purge', true) = 'on'
         and pg_has_role(current_user, (select relowner from pg_class where oid = tg_relid), 'MEMBER') then
        return case when tg_op = 'DELETE' then old else null end;
      end if;
      raise exception 'audit_logs is append-only: % is not allowed', tg_op
        using errcode = 'insufficient_privilege',
              hint = 'Retention is wincloud_audit_purge(cutoff), run by the owner of audit_logs.';
    end $$`)
  await knex.raw(`
    create trigger wincloud_audit_logs_append_only before update or delete on audit_logs
    for each row execute function wincloud_audit_append_only()`)
  await knex.raw(`
    create trigger wincloud_audit_logs_no_truncate before truncate on audit_logs
    for each statement execute function wincloud_audit_append_only()`)

  // The chain head: one row. anchor_* is where verification starts (moved forward by purges).
  await knex.raw(`
    create table wincloud_audit_chain (
      id boolean primary key default true check (id),
      enabled_at timestamptz,
      last_seq bigint not null default 0,
      last_hash bytea not null default decode(repeat('00', 32), 'hex'),
      anchor_seq bigint not null default 0,
      anchor_hash bytea not null default decode(repeat('00', 32), 'hex')
    )`)
  await knex.raw(`insert into wincloud_audit_chain default values`)
  await knex.raw(CANONICAL)

  // Per row: the next sequence number and hashes, from a transaction-local copy of the head; the head row stays
  // locked until the transaction ends, so concurrent writers append one transaction after another.
  await knex.raw(CHAIN_ROW)
  // Per statement: the head row takes the last row's sequence number and hash.
  await knex.raw(CHAIN_HEAD)
  await knex.raw(ENABLE_CHAIN)
  // Retention: deletes rows older than the cutoff (for a chain, its prefix before the first row at or after the
  // cutoff, so no hole is left), moves the chain's anchor, and says how many rows went.
  await knex.raw(PURGE)
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`drop trigger if exists wincloud_audit_logs_chain_row on audit_logs`)
  await knex.raw(`drop trigger if exists wincloud_audit_logs_chain_head on audit_logs`)
  await knex.raw(`drop trigger if exists wincloud_audit_logs_append_only on audit_logs`)
  await knex.raw(`drop trigger if exists wincloud_audit_logs_no_truncate on audit_logs`)
  await knex.raw(`drop function if exists wincloud_audit_purge(timestamptz)`)
  await knex.raw(`drop function if exists wincloud_audit_enable_chain()`)
  await knex.raw(`drop function if exists wincloud_audit_chain_head()`)
  await knex.raw(`drop function if exists wincloud_audit_chain_row()`)
  await knex.raw(
    `drop function if exists wincloud_audit_canonical(bigint, uuid, timestamptz, uuid, text, text, text, text, jsonb, jsonb)`,
  )
  await knex.raw(`drop function if exists wincloud_audit_append_only()`)
  await knex.raw(`drop table if exists wincloud_audit_chain`)
  await knex.raw(`drop index if exists audit_logs_created_at_index`)
  await knex.raw(`drop index if exists audit_logs_action_index`)
  await knex.raw(`drop index if exists audit_logs_entity_index`)
  await knex.raw(`drop index if exists audit_logs_actor_index`)
  await knex.raw(`create index audit_logs_entity_index on audit_logs (entity_type, entity_id, created_at)`)
  await knex.raw(`create index audit_logs_actor_index on audit_logs (actor_id, created_at)`)
  await knex.raw(`drop index if exists audit_logs_chain_seq_unique`)
  await knex.raw(`alter table audit_logs drop column chain_seq, drop column prev_hash, drop column row_hash`)
  await knex.raw(`alter table audit_logs alter column id drop default`)
  await knex.raw(`drop function if exists wincloud_uuidv7()`)
}
