import { defineConfig } from 'vitest/config'

const deep = process.env.WINCLOUD_TEST_DEEP === '1'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['./test/helpers/global-setup.ts'],
    pool: 'forks',
    testTimeout: deep ? 300_000 : 60_000,
    hookTimeout: 120_000,
    teardownTimeout: 60_000,
    allowOnly: !process.env.CI,
    reporters: process.env.CI ? ['default'] : ['default'],
  },
})
