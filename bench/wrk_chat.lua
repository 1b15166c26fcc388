-- wrk script for bench/proxy_bench.py: POST /v1/chat/completions with the bodies of
-- bench/request_mix.jsonl, rotating over N distinct keys "Authorization: Bearer sk-bench-<n>".
--
--   wrk -t2 -c64 -d10s -s bench/wrk_chat.lua http://127.0.0.1:PORT -- bench/request_mix.jsonl 300
--
-- At the end it prints one line "WRK_JSON {...}" with the totals and latency percentiles
-- (closed-loop latencies: informative only, see openloop.py for latency at a fixed rate).

local path = "/v1/chat/completions"
local mix_file = "bench/request_mix.jsonl"
local n_keys = 300

local threads = {}
local counter = 0
local requests = {}
local n_requests = 0

local function load_bodies(file)
    local bodies = {}
    local fh = assert(io.open(file, "r"), "cannot open request mix " .. file)
    for line in fh:lines() do
        if line:match("%S") then
            bodies[#bodies + 1] = line
        end
    end
    fh:close()
    assert(#bodies > 0, "empty request mix " .. file)
    return bodies
end

function setup(thread)
    thread:set("tid", #threads)
    table.insert(threads, thread)
end

function init(args)
    if args[1] ~= nil then mix_file = args[1] end
    if args[2] ~= nil then n_keys = tonumber(args[2]) end
    local bodies = load_bodies(mix_file)
    -- Every (key, body) pair once; consecutive requests use different keys.
    for b = 1, #bodies do
        for k = 0, n_keys - 1 do
            local headers = {
                ["Content-Type"] = "application/json",
                ["Authorization"] = "Bearer sk-bench-" .. k,
            }
            n_requests = n_requests + 1
            requests[n_requests] = wrk.format("POST", path, headers, bodies[b])
        end
    end
    -- Threads start at different offsets of the same cycle.
    counter = (tid or 0) * 7919
end

function request()
    counter = counter + 1
    return requests[counter % n_requests + 1]
end

function done(summary, latency, _)
    local e = summary.errors
    io.write(string.format(
        'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
        '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
        '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
        summary.requests, summary.duration, summary.bytes,
        e.connect, e.read, e.write, e.status, e.timeout,
        latency:percentile(50), latency:percentile(90), latency:percentile(99),
        latency.max, latency.mean))
end
