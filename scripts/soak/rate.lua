-- rate.lua: the shared load script (post_event.lua) at a fixed request rate,
-- paced the way wrk2 does it, for Debian's wrk (which has no --rate).
--
--   FI_SOAK_LUA=…/post_event.lua FI_SOAK_RATE_PER_THREAD=1500 \
--     wrk -t2 -c32 -d10s -s scripts/soak/rate.lua http://127.0.0.1:PORT
--
-- Each thread keeps a schedule of send times, one every 1/rate seconds, and
-- delay() holds each connection's next request until its slot. Requests are
-- not sent in bursts to catch up after a stall longer than one second, and
-- latency is measured from the send, not from the slot (wrk2 corrects for
-- that "coordinated omission"; this does not), so a stall shows as a lower
-- rate in that window rather than as a higher p99.
local script = os.getenv("FI_SOAK_LUA") or error("FI_SOAK_LUA must name post_event.lua")
dofile(script)

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } fi_timespec;
  int clock_gettime(int clock, fi_timespec *ts);
]]
local ts = ffi.new("fi_timespec")
local function now_ms()
   ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
   return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local interval_ms, next_at
local base_init = init

function init(args)
   base_init(args)
   local rate = tonumber(os.getenv("FI_SOAK_RATE_PER_THREAD") or "")
   if not rate or rate <= 0 then error("FI_SOAK_RATE_PER_THREAD must be a positive number") end
   interval_ms = 1000 / rate
end

function delay()
   local t = now_ms()
   if next_at == nil or next_at < t - 1000 then next_at = t end
   local wait = next_at - t
   next_at = next_at + interval_ms
   if wait <= 0 then return 0 end
   return math.floor(wait + 0.5)
end
