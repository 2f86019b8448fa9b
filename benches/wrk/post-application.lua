-- Kindergarten applications for wrk (benches/wrk/overload.sh runs it): every request a new
-- child (unique document) with its own Idempotency-Key, from a pool of parent tokens, to one
-- kindergarten; counts the answers by status.
--
-- Environment: OCHERED_WRK_TOKENS (a file, one bearer token per line), OCHERED_WRK_AUTHORITY
-- (default demo), OCHERED_WRK_KINDERGARTEN (an institution id of that authority),
-- OCHERED_WRK_STATUS_FILE (where done() writes "status count" lines), OCHERED_WRK_RUN (letters
-- and digits naming this run, put in every document and key: wrk numbers its requests from 1
-- in every run, so without it a second run against the same server would send the first
-- run's children again and be answered from the idempotency record instead of deciding new
-- submissions).

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

function init(args)
  tokens = {}
  for line in io.lines(os.getenv("OCHERED_WRK_TOKENS")) do
    tokens[#tokens + 1] = line
  end
  path = "/api/v1/authorities/" .. (os.getenv("OCHERED_WRK_AUTHORITY") or "demo")
    .. "/kindergarten/applications"
  kindergarten = os.getenv("OCHERED_WRK_KINDERGARTEN")
  run = os.getenv("OCHERED_WRK_RUN") or "R"
  counter = 0
  statuses = {}
end

function request()
  counter = counter + 1
  -- Thread k numbers its children k*10^7 + 1, 2, ...: unique documents across threads.
  local n = id * 10000000 + counter
  local body = string.format(
    '{"document":"II-WR %s %08d","birth_date":"2024-03-10","preferences":["%s"],"desired_start":"2027-09-01"}',
    run, n, kindergarten)
  local headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. tokens[(n % #tokens) + 1],
    ["Idempotency-Key"] = "wrk-" .. run .. "-" .. n,
  }
  return wrk.format("POST", path, headers, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      total[status] = (total[status] or 0) + n
    end
  end
  local out = io.open(os.getenv("OCHERED_WRK_STATUS_FILE"), "w")
  for status, n in pairs(total) do
    out:write(string.format("%d %d\n", status, n))
  end
  out:close()
end
