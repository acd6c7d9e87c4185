import type { Knex } from 'knex'

/**
 * Where each legacy Fernet token was found. A Fernet token (from the Python backend) names no row: copied into
 * another row, column or table it still decrypts. `db.crypto.inventoryLegacyTokens()`, run right after the import,
 * records each token's place:
 *
 * - `wincloud_legacy_tokens`: one row per place (table, column, row id) that held a Fernet token, with `digest`,
 *   HMAC-SHA256 under a key derived from `encryption.blindIndexKey` over the place and the token, length-prefixed.
 *   The digest is worthless anywhere else, and cannot be made without the key. `db.crypto.rotate()` turns a token
 *   into an envelope only where its digest matches, and deletes the entry when it has.
 * - `wincloud_legacy_token_columns`: the columns whose inventory was completed, and when. A later run adds no entry
 *   to them (unless told to), and `rotate()` tells "no inventory taken" from "not in the inventory".
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    create table wincloud_legacy_tokens (
      table_name text not null,
      column_name text not null,
      row_id text not null,
      digest bytea not null check (octet_length(digest) = 32),
      recorded_at timestamptz not null default now(),
      primary key (table_name, column_name, row_id)
    )`)
  await knex.raw(`
    create table wincloud_legacy_token_columns (
      table_name text not null,
      column_name text not null,
      completed_at timestamptz not null default now(),
      primary key (table_name, column_name)
    )`)
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`drop table if exists wincloud_legacy_token_columns`)
  await knex.raw(`drop table if exists wincloud_legacy_tokens`)
}
