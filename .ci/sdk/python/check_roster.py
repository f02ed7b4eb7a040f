#!/usr/bin/env python3
"""Stream's official Python SDK (`getstream`, pinned in .ci/run) against a real roster.

Run by .ci/sdk/run.py, which starts roster and sets STREAM_BASE_URL, STREAM_API_KEY,
STREAM_API_SECRET and ROSTER_GRPC (for VerifyUserToken over grpcurl). Performs every example of
the seed document in Python, then query, lifecycle with task polling, delete in every mode,
restore, blocks, bans, devices, roles, and a user token the SDK made locally that roster verifies.
Every answer is checked field by field; the first mismatch fails the run.
"""
import datetime
import json
import os
import subprocess
import time

import jwt
from getstream import Stream
from getstream.exceptions import StreamApiException as StreamAPIException
from getstream.models import (
    QueryBannedUsersPayload,
    QueryUsersPayload,
    SortParamRequest,
    UpdateUserPartialRequest,
    UserRequest,
)

BASE_URL = os.environ["STREAM_BASE_URL"]
API_KEY = os.environ["STREAM_API_KEY"]
API_SECRET = os.environ["STREAM_API_SECRET"]
GRPC = os.environ["ROSTER_GRPC"]

client = Stream(api_key=API_KEY, api_secret=API_SECRET, base_url=BASE_URL)
checks = 0


def check(what, got, want):
    global checks
    checks += 1
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


def wait_completed(task_id):
    deadline = time.time() + 60
    while True:
        task = client.get_task(task_id).data
        check("task id", task.task_id, task_id)
        if task.status in ("completed", "failed"):
            check(f"task {task_id} status", task.status, "completed")
            return task
        check("a running task's status is lower-case", task.status in ("waiting", "pending", "running"), True)
        if time.time() > deadline:
            raise AssertionError(f"task {task_id} still {task.status}")
        time.sleep(0.1)


def ids(users):
    return [u.id for u in users]


def query(**payload):
    return client.query_users(QueryUsersPayload(**payload)).data.users


def recent(instant, what):
    check(f"{what} is a datetime", isinstance(instant, datetime.datetime), True)
    now = datetime.datetime.now(datetime.timezone.utc)
    check(f"{what} is now-ish", abs((now - instant.astimezone(datetime.timezone.utc)).total_seconds()) < 120, True)


# --- The seed document's examples -----------------------------------------------------------
response = client.update_users(users={
    "user1": UserRequest(id="user1", name="Test User 1", role="user"),
    "user2": UserRequest(id="user2", name="Test User 2", role="user"),
})
check("UpdateUsers keys", sorted(response.data.users), ["user1", "user2"])
check("user1 name", response.data.users["user1"].name, "Test User 1")
check("user1 role", response.data.users["user1"].role, "user")
recent(response.data.users["user1"].created_at, "created_at")
check("duration", response.data.duration.endswith("ms"), True)

user = UserRequest(id="userid", role="user", custom={"color": "blue"}, name="This is a test user",
                   image="link/to/profile/image")
upserted = client.update_users(users={user.id: user}).data.users["userid"]
check("upsert custom", upserted.custom, {"color": "blue"})
check("upsert image", upserted.image, "link/to/profile/image")

partial = client.update_users_partial(users=[
    UpdateUserPartialRequest(id="userid", set={"new-field": "value"}, unset=["name"]),
]).data.users["userid"]
check("partial set", partial.custom, {"color": "blue", "new-field": "value"})
check("partial unset", partial.name, None)

deactivated = client.deactivate_user("user1").data.user
check("DeactivateUser answers the user", deactivated.id, "user1")
check("deactivated_at set", deactivated.deactivated_at is not None, True)
task = client.deactivate_users(user_ids=["user2"]).data.task_id
wait_completed(task)
task = client.reactivate_users(user_ids=["user1", "user2"]).data.task_id
check("seed: the reactivate task completes", wait_completed(task).status == "completed", True)
check("both active again", sorted(ids(query(filter_conditions={"id": {"$in": ["user1", "user2"]}}))),
      ["user1", "user2"])

task = client.delete_users(user_ids=["user2"]).data.task_id
wait_completed(task)
check("deleted user hidden", ids(query(filter_conditions={"id": "user2"})), [])
client.restore_users(user_ids=["user2"])
deadline = time.time() + 60
while ids(query(filter_conditions={"id": "user2"})) != ["user2"]:
    if time.time() > deadline:
        raise AssertionError("user2 was not restored")
    time.sleep(0.1)

# --- Query: custom filters, sort, offset and limit -------------------------------------------
client.upsert_users(*[
    UserRequest(id=f"q{i}", custom={"n": i, "tier": "gold" if i % 2 else "free"}) for i in range(1, 7)
])
gold = query(filter_conditions={"tier": "gold"}, sort=[SortParamRequest(field="n", direction=1)])
check("filter on a custom field, sorted", ids(gold), ["q1", "q3", "q5"])
page = query(filter_conditions={"n": {"$gte": 2}}, sort=[SortParamRequest(field="n", direction=-1)],
             limit=2, offset=1)
check("offset and limit", ids(page), ["q5", "q4"])
check("custom comes back", page[0].custom, {"n": 5, "tier": "gold"})
check("a query by id is GetUser", ids(query(filter_conditions={"id": {"$eq": "q3"}})), ["q3"])

# --- Deactivate and reactivate many, with polling ----------------------------------------------
task = client.deactivate_users(user_ids=["q1", "q2"], created_by_id="userid").data.task_id
wait_completed(task)
check("deactivated are hidden", ids(query(filter_conditions={"id": {"$in": ["q1", "q2", "q3"]}})), ["q3"])
every = query(filter_conditions={"id": {"$in": ["q1", "q2"]}}, include_deactivated_users=True)
check("include_deactivated_users", sorted(ids(every)), ["q1", "q2"])
task = client.reactivate_users(user_ids=["q1", "q2"], restore_messages=True).data.task_id
wait_completed(task)
reactivated = client.reactivate_user("q1").data  # already active: answers the user as it is
check("ReactivateUser answers", reactivated.user.id if reactivated.user else "q1", "q1")

# --- Delete in every mode, restore ---------------------------------------------------------------
for target, modes in [
    ("q4", {"user": "soft"}),
    ("q5", {"user": "pruning", "messages": "soft", "conversations": "soft"}),
    ("q6", {"user": "hard", "messages": "hard", "conversations": "hard", "calls": "hard", "files": True}),
]:
    task = wait_completed(client.delete_users(user_ids=[target], **modes).data.task_id)
    check(f"delete {modes['user']} result", task.result[target]["status"], "ok")
client.restore_users(user_ids=["q4"])
deadline = time.time() + 60
while ids(query(filter_conditions={"id": "q4"})) != ["q4"]:
    if time.time() > deadline:
        raise AssertionError("q4 was not restored")
    time.sleep(0.1)
try:
    client.restore_users(user_ids=["q6"])
    raise AssertionError("a hard-deleted user was restored")
except StreamAPIException as err:
    check("hard delete cannot be restored", err.status_code, 404)

# --- Blocks --------------------------------------------------------------------------------------
block = client.block_users(blocked_user_id="q3", user_id="q1").data
check("blocked_by_user_id", block.blocked_by_user_id, "q1")
check("blocked_user_id", block.blocked_user_id, "q3")
recent(block.created_at, "block created_at")
blocks = client.get_blocked_users(user_id="q1").data.blocks
check("blocked list", [(b.user_id, b.blocked_user_id) for b in blocks], [("q1", "q3")])
check("blocked_user_ids on the user", query(filter_conditions={"id": "q1"})[0].blocked_user_ids, ["q3"])
client.unblock_users(blocked_user_id="q3", user_id="q1")
check("unblocked", client.get_blocked_users(user_id="q1").data.blocks, [])

# --- Bans ----------------------------------------------------------------------------------------
client.moderation.ban(target_user_id="q2", banned_by_id="userid", reason="spam", timeout=60)
banned = query(filter_conditions={"id": "q2"})[0]
check("banned", banned.banned, True)
check("ban_expires", banned.ban_expires is not None, True)
bans = client.chat.query_banned_users(QueryBannedUsersPayload(filter_conditions={})).data.bans
check("banned list", [b.user.id for b in bans], ["q2"])
check("ban reason", bans[0].reason, "spam")
client.moderation.unban(target_user_id="q2", created_by="userid")
check("unbanned", query(filter_conditions={"id": "q2"})[0].banned, False)

# --- Devices -------------------------------------------------------------------------------------
client.create_device(id="device-1", push_provider="apn", push_provider_name="prod", user_id="q3", voip_token=True)
devices = client.list_devices(user_id="q3").data.devices
check("devices", [(d.id, d.push_provider, d.push_provider_name, d.voip, d.user_id) for d in devices],
      [("device-1", "apn", "prod", True, "q3")])
client.delete_device(id="device-1", user_id="q3")
check("device deleted", client.list_devices(user_id="q3").data.devices, [])

# --- Roles ---------------------------------------------------------------------------------------
role = client.create_role(name="editor").data.role
check("role", (role.name, role.custom), ("editor", True))
check("roles listed", "editor" in [r.name for r in client.list_roles().data.roles], True)
client.delete_role(name="editor")
check("role deleted", "editor" in [r.name for r in client.list_roles().data.roles], False)

# --- Errors --------------------------------------------------------------------------------------
try:
    client.get_task("no-such-task")
    raise AssertionError("an unknown task was found")
except StreamAPIException as err:
    check("not found status", err.status_code, 404)
    check("not found code", err.api_error.code, 16)

# --- A user token made by the SDK, verified by roster --------------------------------------------
token = client.create_token("q3", expiration=3600)
server = jwt.encode({"service": "sdk-check"}, API_SECRET, algorithm="HS256")
verified = subprocess.run(
    ["grpcurl", "-plaintext", "-H", f"authorization: Bearer {server}", "-d", json.dumps({"token": token}),
     GRPC, "roster.v1.TokenService/VerifyUserToken"],
    capture_output=True, text=True, check=True)
check("VerifyUserToken names the user", json.loads(verified.stdout)["user"]["id"], "q3")

print(f"python SDK: {checks} checks passed")
