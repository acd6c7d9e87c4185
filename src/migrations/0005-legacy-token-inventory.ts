import type { Knex } from 'knex'

/** Where each legacy Fernet token was found: see below. */
export async function up(knex: Knex): Promise<void> {
  void knex
}

export async function down(knex: Knex): Promise<void> {
  void knex
}
