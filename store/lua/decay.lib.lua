-- Lazily decayed sums. A hash field holds "t v1 v2 ... vn": the sums as they stood at time t.
-- Adding brings both the stored sums and the additions to the later of t and now, each
-- multiplied by 2^(-age / half_life), so no periodic pass over every field is needed.
-- (bandit.decay.decay_to applies the same formula when the sums are read.)
local function decayed_add(key, field, width, adds, now, half_life, fmt)
  fmt = fmt or '%.17g'
  local sums = {}
  local t = now
  local cur = redis.call('HGET', key, field)
  if cur then
    local i = -1
    for x in string.gmatch(cur, '%S+') do
      if i < 0 then t = tonumber(x) else sums[i + 1] = tonumber(x) end
      i = i + 1
    end
  end
  local at = math.max(t, now)
  local keep = 2 ^ (-(at - t) / half_life)
  local fresh = 2 ^ (-(at - now) / half_life)
  local out = {string.format('%.17g', at)}
  for i = 1, width do
    out[i + 1] = string.format(fmt, (sums[i] or 0) * keep + (adds[i] or 0) * fresh)
  end
  redis.call('HSET', key, field, table.concat(out, ' '))
end
