import type { Knex } from 'knex'

/**
 * The encrypted columns of the WinCloud models: a droplet's Windows administrator password and a user's cloud API
 * token, each stored as an envelope (`v1.<keyId>.<nonce>.<ciphertext>`, see docs) and, for the token, a blind index
 * for equality lookups.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`alter table droplets add column admin_password_ciphertext text`)
  await knex.raw(`alter table users add column api_token_ciphertext text, add column api_token_bidx text`)
  await knex.raw(`create index users_api_token_bidx_index on users (api_token_bidx) where api_token_bidx is not null`)
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`drop index if exists users_api_token_bidx_index`)
  await knex.raw(`alter table users drop column api_token_bidx, drop column api_token_ciphertext`)
  await knex.raw(`alter table droplets drop column admin_password_ciphertext`)
}
