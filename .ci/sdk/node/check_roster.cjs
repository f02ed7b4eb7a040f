// Stream's official Node SDK (@stream-io/node-sdk, pinned in .ci/run) against a real roster.
//
// Run by .ci/sdk/run.py (see there for the environment). Performs every example of the seed
// document, then query, lifecycle with task polling, delete in every mode, restore, blocks, bans,
// devices, roles, and a user token the SDK made locally that roster verifies. Every answer is
// checked field by field; the first mismatch fails the run.
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { execFileSync } = require('node:child_process');
const { StreamClient } = require('@stream-io/node-sdk');

const { STREAM_BASE_URL, STREAM_API_KEY, STREAM_API_SECRET, ROSTER_GRPC } = process.env;
const client = new StreamClient(STREAM_API_KEY, STREAM_API_SECRET, { basePath: STREAM_BASE_URL });
let checks = 0;

function check(what, got, want) {
  checks += 1;
  assert.deepStrictEqual(got, want, what);
}

async function waitCompleted(taskId) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const task = await client.getTask({ id: taskId });
    check('task id', task.task_id, taskId);
    if (task.status === 'completed' || task.status === 'failed') {
      check(`task ${taskId} status`, task.status, 'completed');
      return task;
    }
    check('a running task is lower-case', ['waiting', 'pending', 'running'].includes(task.status), true);
    if (Date.now() > deadline) throw new Error(`task ${taskId} still ${task.status}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function query(payload) {
  return (await client.queryUsers({ payload })).users;
}
const ids = (users) => users.map((u) => u.id);

async function eventually(what, predicate) {
  const deadline = Date.now() + 60_000;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function recent(instant, what) {
  check(`${what} is a Date`, instant instanceof Date, true);
  check(`${what} is now-ish`, Math.abs(Date.now() - instant.getTime()) < 120_000, true);
}

function hs256(claims, secret) {
  const part = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${body}.${crypto.createHmac('sha256', secret).update(body).digest('base64url')}`;
}

async function main() {
  // --- The seed document's examples ---------------------------------------------------------
  const updated = await client.updateUsers({
    users: {
      user1: { id: 'user1', name: 'Test User 1', role: 'user' },
      user2: { id: 'user2', name: 'Test User 2', role: 'user' },
    },
  });
  check('UpdateUsers keys', Object.keys(updated.users).sort(), ['user1', 'user2']);
  check('name', updated.users.user1.name, 'Test User 1');
  recent(updated.users.user1.created_at, 'created_at');
  check('duration', updated.duration.endsWith('ms'), true);

  const upserted = (await client.upsertUsers([
    { id: 'userid', role: 'user', custom: { color: 'blue' }, name: 'This is a test user', image: 'link/to/profile/image' },
  ])).users.userid;
  check('custom', upserted.custom, { color: 'blue' });
  const partial = (await client.updateUsersPartial({
    users: [{ id: 'userid', set: { 'new-field': 'value' }, unset: ['name'] }],
  })).users.userid;
  check('partial set', partial.custom, { color: 'blue', 'new-field': 'value' });
  check('partial unset', partial.name, undefined);

  const deactivated = await client.deactivateUser({ user_id: 'user1' });
  check('DeactivateUser answers the user', deactivated.user.id, 'user1');
  check('deactivated_at', deactivated.user.deactivated_at instanceof Date, true);
  await waitCompleted((await client.deactivateUsers({ user_ids: ['user2'] })).task_id);
  await waitCompleted((await client.reactivateUsers({ user_ids: ['user1', 'user2'] })).task_id);
  check('both active', ids(await query({ filter_conditions: { id: { $in: ['user1', 'user2'] } } })).sort(), ['user1', 'user2']);
  await waitCompleted((await client.deleteUsers({ user_ids: ['user2'] })).task_id);
  check('deleted is hidden', ids(await query({ filter_conditions: { id: 'user2' } })), []);
  await client.restoreUsers({ user_ids: ['user2'] });
  await eventually('user2 restored', async () => ids(await query({ filter_conditions: { id: 'user2' } })).length === 1);

  // --- Query --------------------------------------------------------------------------------
  await client.upsertUsers([1, 2, 3, 4, 5, 6].map((i) => ({ id: `q${i}`, custom: { n: i, tier: i % 2 ? 'gold' : 'free' } })));
  check('custom filter, sorted', ids(await query({ filter_conditions: { tier: 'gold' }, sort: [{ field: 'n', direction: 1 }] })), ['q1', 'q3', 'q5']);
  const page = await query({ filter_conditions: { n: { $gte: 2 } }, sort: [{ field: 'n', direction: -1 }], limit: 2, offset: 1 });
  check('offset and limit', ids(page), ['q5', 'q4']);
  check('custom back', page[0].custom, { n: 5, tier: 'gold' });

  // --- Deactivate and reactivate many -------------------------------------------------------
  await waitCompleted((await client.deactivateUsers({ user_ids: ['q1', 'q2'], created_by_id: 'userid' })).task_id);
  check('hidden', ids(await query({ filter_conditions: { id: { $in: ['q1', 'q2', 'q3'] } } })), ['q3']);
  check('include_deactivated_users', ids(await query({ filter_conditions: { id: { $in: ['q1', 'q2'] } }, include_deactivated_users: true })).sort(), ['q1', 'q2']);
  await waitCompleted((await client.reactivateUsers({ user_ids: ['q1', 'q2'] })).task_id);

  // --- Delete in every mode, restore --------------------------------------------------------
  for (const [target, modes] of [
    ['q4', { user: 'soft' }],
    ['q5', { user: 'pruning', messages: 'soft', conversations: 'soft' }],
    ['q6', { user: 'hard', messages: 'hard', conversations: 'hard', calls: 'hard', files: true }],
  ]) {
    const task = await waitCompleted((await client.deleteUsers({ user_ids: [target], ...modes })).task_id);
    check(`delete ${modes.user}`, task.result[target].status, 'ok');
  }
  await client.restoreUsers({ user_ids: ['q4'] });
  await eventually('q4 restored', async () => ids(await query({ filter_conditions: { id: 'q4' } })).length === 1);
  await assert.rejects(client.restoreUsers({ user_ids: ['q6'] }), /404|not found/i);
  checks += 1;

  // --- Blocks, bans, devices, roles ---------------------------------------------------------
  const block = await client.blockUsers({ user_id: 'q1', blocked_user_id: 'q3' });
  check('block', [block.blocked_by_user_id, block.blocked_user_id], ['q1', 'q3']);
  recent(block.created_at, 'block created_at');
  check('blocked list', (await client.getBlockedUsers({ user_id: 'q1' })).blocks.map((b) => b.blocked_user_id), ['q3']);
  await client.unblockUsers({ user_id: 'q1', blocked_user_id: 'q3' });
  check('unblocked', (await client.getBlockedUsers({ user_id: 'q1' })).blocks, []);

  await client.moderation.ban({ target_user_id: 'q2', banned_by_id: 'userid', reason: 'spam', timeout: 60 });
  check('banned', (await query({ filter_conditions: { id: 'q2' } }))[0].banned, true);
  const bans = (await client.chat.queryBannedUsers({ payload: { filter_conditions: {} } })).bans;
  check('banned list', bans.map((b) => [b.user.id, b.reason, b.banned_by.id]), [['q2', 'spam', 'userid']]);
  await client.moderation.unban({ target_user_id: 'q2', created_by: 'userid' });
  check('unbanned', (await query({ filter_conditions: { id: 'q2' } }))[0].banned, false);

  await client.createDevice({ id: 'device-1', push_provider: 'firebase', user_id: 'q3' });
  const devices = (await client.listDevices({ user_id: 'q3' })).devices;
  check('devices', devices.map((d) => [d.id, d.push_provider, d.user_id]), [['device-1', 'firebase', 'q3']]);
  await client.deleteDevice({ id: 'device-1', user_id: 'q3' });
  check('device deleted', (await client.listDevices({ user_id: 'q3' })).devices, []);

  const role = (await client.createRole({ name: 'editor' })).role;
  check('role', [role.name, role.custom], ['editor', true]);
  check('listed', (await client.listRoles()).roles.some((r) => r.name === 'editor'), true);
  await client.deleteRole({ name: 'editor' });
  check('deleted role', (await client.listRoles()).roles.some((r) => r.name === 'editor'), false);

  // --- A user token made by the SDK, verified by roster -------------------------------------
  const token = client.generateUserToken({ user_id: 'q3', validity_in_seconds: 3600 });
  const server = hs256({ service: 'sdk-check-node' }, STREAM_API_SECRET);
  const verified = JSON.parse(execFileSync('grpcurl', [
    '-plaintext', '-H', `authorization: Bearer ${server}`, '-d', JSON.stringify({ token }),
    ROSTER_GRPC, 'roster.v1.TokenService/VerifyUserToken',
  ]).toString());
  check('VerifyUserToken names the user', verified.user.id, 'q3');

  console.log(`node SDK: ${checks} checks passed`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
