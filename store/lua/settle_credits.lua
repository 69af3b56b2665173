-- uses: decay.lib
-- uses: credit.lib
-- Apply in partition 0 the credits another partition's rollup found (EVENT_PARTITIONS):
-- once per feed, as the rollup does in partition 0 itself, so a settle retried after a crash
-- (its credits still listed) adds nothing twice.
-- KEYS: strategies, then the credited-feed sets the items name by index
-- ARGV: now, half_life, credited_ttl_s, n_strategies, then the items (credit.lib's five)
credit_feeds(KEYS[1], 5, #ARGV, tonumber(ARGV[4]), tonumber(ARGV[1]), tonumber(ARGV[2]),
             ARGV[3])
return 1
