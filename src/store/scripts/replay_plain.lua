-- Replay hooks (head of every replay-guarded script but settle_part.lua): the reply is stored
-- and given back as it is.
local function __replay_store(r) return r end
local function __replay_load(r) return r end
