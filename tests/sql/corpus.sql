-- Corpus of SQL views for lambdaflow's SQL engine tests.
-- Every view reads the table `events` (ts BIGINT, kind VARCHAR, customer BIGINT, product BIGINT,
-- amount_cents BIGINT, NULL when absent) or earlier views of this file. The expected rows come from
-- DuckDB through `oracle.py` (with SET error_on_division_by_zero=false). Rules kept throughout:
-- every output column has a unique explicit name; a top-level ORDER BY always comes with LIMIT and a
-- total order; ROW_NUMBER orders totally inside its partition; no arithmetic can overflow BIGINT
-- (customer reaches 2^63 - 2 and amount_cents 2^52 - 1 in the golden data: only % and // on customer,
-- multipliers of at most 100 on amount_cents).

-- ===================================================================== the five reference views
-- reference: strftime day key, SUM(CASE kind WHEN), IN list, GROUP BY output alias
CREATE VIEW revenue_by_day AS
  SELECT strftime(epoch_ms(ts), '%Y-%m-%d') AS day,
         SUM(CASE kind WHEN 'purchase' THEN amount_cents ELSE -amount_cents END) AS revenue_cents
  FROM events WHERE kind IN ('purchase', 'refund') GROUP BY day;
-- reference: GROUP BY column, COUNT(*) FILTER (WHERE ...)
CREATE VIEW product_stats AS
  SELECT product, COUNT(*) FILTER (WHERE kind = 'purchase') AS purchases,
         COUNT(*) FILTER (WHERE kind = 'refund') AS refunds,
         SUM(CASE kind WHEN 'purchase' THEN amount_cents ELSE -amount_cents END) AS revenue_cents
  FROM events WHERE kind IN ('purchase', 'refund') GROUP BY product;
-- reference: GROUP BY column, SUM(CASE ...)
CREATE VIEW customer_spend AS
  SELECT customer, SUM(CASE kind WHEN 'purchase' THEN amount_cents ELSE -amount_cents END) AS spend_cents
  FROM events WHERE kind IN ('purchase', 'refund') GROUP BY customer;
-- reference: tumbling window ts - ts % 60000 grouped by alias, FILTER per kind, quoted column "view"
CREATE VIEW events_per_minute AS
  SELECT ts - ts % 60000 AS minute, COUNT(*) FILTER (WHERE kind = 'purchase') AS purchase,
         COUNT(*) FILTER (WHERE kind = 'refund') AS refund, COUNT(*) FILTER (WHERE kind = 'view') AS "view"
  FROM events GROUP BY minute;
-- reference: ranked view ORDER BY aggregate DESC, key ASC LIMIT 10
CREATE VIEW top_products AS
  SELECT product, SUM(CASE kind WHEN 'purchase' THEN amount_cents ELSE -amount_cents END) AS revenue_cents
  FROM events WHERE kind IN ('purchase', 'refund') GROUP BY product
  ORDER BY revenue_cents DESC, product ASC LIMIT 10;

-- ===================================================================== projection, aliases, WHERE
-- SELECT columns with aliases, WHERE equality on a string
CREATE VIEW purchase_rows AS
  SELECT ts AS at_ms, customer AS buyer, product AS item, amount_cents AS cents
  FROM events WHERE kind = 'purchase';
-- SELECT expressions, WHERE with AND and a numeric comparison
CREATE VIEW big_refunds AS
  SELECT ts, customer, product, amount_cents, amount_cents - 10000 AS over_10k
  FROM events WHERE kind = 'refund' AND amount_cents > 10000;
-- arithmetic + - * / // % on amount_cents (/ gives DOUBLE, // and % truncate toward zero)
CREATE VIEW purchase_arithmetic AS
  SELECT ts, customer, product,
         amount_cents + 1 AS plus_one, amount_cents - 100 AS minus_100, amount_cents * 3 AS tripled,
         amount_cents / 100 AS dollars, amount_cents // 100 AS whole_dollars, amount_cents % 100 AS cents_part,
         (amount_cents + 50) // 100 * 100 AS rounded_to_dollar
  FROM events WHERE kind = 'purchase';
-- arithmetic on negative values: unary minus, // and % of negatives truncate toward zero
CREATE VIEW refund_negatives AS
  SELECT ts, customer, product, -amount_cents AS neg_cents, -amount_cents // 7 AS neg_div_7,
         -amount_cents % 7 AS neg_mod_7, -(amount_cents % 7) AS neg_of_mod, 0 - amount_cents * 2 AS minus_twice
  FROM events WHERE kind = 'refund';
-- comparisons = <> != < <= > >= as boolean output columns
CREATE VIEW refund_comparisons AS
  SELECT ts, customer, product,
         amount_cents = 2408 AS eq_2408, amount_cents <> 2408 AS ne_2408, amount_cents != 1204 AS ne_1204,
         amount_cents < 1000 AS lt_1000, amount_cents <= 1000 AS le_1000,
         amount_cents > 5000 AS gt_5000, amount_cents >= 5000 AS ge_5000, product < customer AS product_lt_customer
  FROM events WHERE kind = 'refund';
-- AND OR NOT in WHERE with parentheses
CREATE VIEW and_or_not AS
  SELECT ts, kind, customer, product, amount_cents
  FROM events
  WHERE (kind = 'refund' OR (kind = 'purchase' AND amount_cents >= 20000))
    AND NOT (product = 174 OR customer % 2 = 0);
-- AND OR NOT as boolean output columns (three-valued logic over NULL amounts)
CREATE VIEW boolean_columns AS
  SELECT kind, customer % 5 AS c5,
         COUNT(*) FILTER (WHERE amount_cents > 0 AND product % 2 = 0) AS even_paid,
         COUNT(*) FILTER (WHERE amount_cents > 0 OR product % 2 = 0) AS even_or_paid,
         COUNT(*) FILTER (WHERE NOT (amount_cents > 0)) AS not_paid,
         COUNT(*) FILTER (WHERE (amount_cents > 0) IS NULL) AS unknown_paid
  FROM events GROUP BY kind, customer % 5;
-- IN (list) and NOT IN (list) of integers
CREATE VIEW selected_products AS
  SELECT ts, kind, customer, product, amount_cents, product IN (64, 174, 206) AS favourite
  FROM events WHERE product IN (0, 1, 2, 3, 174, 900004) AND kind NOT IN ('view');
-- BETWEEN and NOT BETWEEN (inclusive bounds)
CREATE VIEW mid_purchases AS
  SELECT ts, customer, product, amount_cents, amount_cents BETWEEN 2408 AND 3612 AS in_band
  FROM events
  WHERE kind = 'purchase' AND amount_cents BETWEEN 1204 AND 5166 AND product NOT BETWEEN 100 AND 199;
-- BETWEEN on time (a two-hour slice of the first day)
CREATE VIEW first_day_slice AS
  SELECT ts, kind, customer, product
  FROM events WHERE ts BETWEEN 1767225600000 AND 1767232800000 - 1 AND kind <> 'view';
-- IS NULL / IS NOT NULL on amount_cents
CREATE VIEW null_amounts AS
  SELECT kind, COUNT(*) AS n, COUNT(*) FILTER (WHERE amount_cents IS NULL) AS missing,
         COUNT(*) FILTER (WHERE amount_cents IS NOT NULL) AS present, COUNT(amount_cents) AS counted
  FROM events GROUP BY kind;
-- IS NULL in WHERE: the rows lacking an amount
CREATE VIEW rows_without_amount AS
  SELECT ts, kind, customer, product, amount_cents IS NULL AS no_amount
  FROM events WHERE amount_cents IS NULL;
-- DISTINCT on one column
CREATE VIEW distinct_kinds AS
  SELECT DISTINCT kind AS kind FROM events;
-- DISTINCT on several columns
CREATE VIEW distinct_purchase_pairs AS
  SELECT DISTINCT customer, product FROM events WHERE kind = 'purchase';
-- DISTINCT on expressions
CREATE VIEW distinct_hours AS
  SELECT DISTINCT ts - ts % 3600000 AS hour_start, kind AS kind FROM events WHERE kind <> 'view';

-- ===================================================================== CASE, CAST, COALESCE
-- CASE x WHEN ... THEN ... ELSE ... END (simple CASE)
CREATE VIEW kind_codes AS
  SELECT kind, CASE kind WHEN 'purchase' THEN 1 WHEN 'refund' THEN -1 ELSE 0 END AS sign,
         COUNT(*) AS n
  FROM events GROUP BY kind;
-- CASE WHEN (searched CASE) as a grouping key; no ELSE gives NULL
CREATE VIEW amount_tiers AS
  SELECT CASE WHEN amount_cents IS NULL THEN 'none'
              WHEN amount_cents = 0 THEN 'free'
              WHEN amount_cents < 1000 THEN 'small'
              WHEN amount_cents < 10000 THEN 'medium'
              ELSE 'large' END AS tier,
         CASE WHEN kind = 'refund' THEN 'back' END AS direction,
         COUNT(*) AS n, SUM(amount_cents) AS total_cents
  FROM events GROUP BY tier, direction;
-- CASE WHEN inside aggregates
CREATE VIEW customer_kind_mix AS
  SELECT customer,
         SUM(CASE WHEN kind = 'view' THEN 1 ELSE 0 END) AS views,
         SUM(CASE WHEN kind = 'purchase' THEN 1 ELSE 0 END) AS buys,
         MAX(CASE WHEN kind = 'purchase' THEN amount_cents END) AS max_buy
  FROM events GROUP BY customer;
-- CAST to VARCHAR, DOUBLE, BIGINT
CREATE VIEW casts AS
  SELECT ts, CAST(customer AS VARCHAR) AS customer_text, CAST(amount_cents AS DOUBLE) AS amount_double,
         CAST(ts AS VARCHAR) AS ts_text, CAST(amount_cents // 100 AS BIGINT) AS dollars,
         CAST(kind = 'refund' AS INTEGER) AS is_refund
  FROM events WHERE kind <> 'view';
-- x::BIGINT (DOUBLE to BIGINT rounds half to even) and x::VARCHAR
CREATE VIEW double_colon_casts AS
  SELECT ts, product::VARCHAR AS product_text, (amount_cents / 100)::BIGINT AS dollars_rounded,
         (amount_cents // 100)::BIGINT AS dollars_truncated, (ts // 1000)::BIGINT AS seconds,
         amount_cents::DOUBLE / 3 AS third
  FROM events WHERE kind = 'refund';
-- COALESCE over a nullable column and a CASE without ELSE
CREATE VIEW coalesced AS
  SELECT kind, COALESCE(amount_cents, 0) AS amount_or_zero,
         COALESCE(CASE WHEN kind = 'refund' THEN amount_cents END, amount_cents, -1) AS refund_first,
         COUNT(*) AS n
  FROM events WHERE kind <> 'purchase' GROUP BY kind, amount_or_zero, refund_first;
-- COALESCE in aggregates (SUM of only NULLs is NULL, COALESCE makes it 0)
CREATE VIEW customer_views_amount AS
  SELECT customer, SUM(amount_cents) AS raw_sum, COALESCE(SUM(amount_cents), 0) AS sum_or_zero,
         COUNT(*) AS n
  FROM events WHERE kind = 'view' GROUP BY customer;

-- ===================================================================== strings
-- lower upper length substr
CREATE VIEW string_functions AS
  SELECT kind, upper(kind) AS up, lower(upper(kind)) AS low, length(kind) AS len,
         substr(kind, 1, 3) AS first3, substr(kind, 2) AS from2, COUNT(*) AS n
  FROM events GROUP BY kind;
-- concat (NULL-skipping, with a number) and || (NULL-propagating)
CREATE VIEW string_concat AS
  SELECT ts, concat(kind, ':', product) AS kind_product,
         kind || '/' || CAST(customer AS VARCHAR) AS kind_customer,
         concat('amount=', amount_cents) AS amount_label,
         'amount=' || CAST(amount_cents AS VARCHAR) AS amount_label_or_null
  FROM events WHERE kind <> 'view' OR amount_cents IS NULL;
-- LIKE and NOT LIKE with % and _
CREATE VIEW like_patterns AS
  SELECT kind, kind LIKE 'p%' AS starts_p, kind LIKE '%e%' AS has_e, kind LIKE '_iew' AS is_view,
         kind NOT LIKE '%und' AS not_refund, COUNT(*) AS n
  FROM events GROUP BY kind;
-- LIKE in WHERE on a number rendered as text
CREATE VIEW products_ending_4 AS
  SELECT product, COUNT(*) AS n, COUNT(DISTINCT customer) AS customers
  FROM events WHERE CAST(product AS VARCHAR) LIKE '%4' GROUP BY product;
-- string functions in a grouping key
CREATE VIEW kind_initials AS
  SELECT upper(substr(kind, 1, 1)) || lower(substr(kind, 2, 2)) AS initials,
         length(kind) * 10 AS len10, COUNT(*) AS n
  FROM events GROUP BY initials, len10;

-- ===================================================================== aggregates and GROUP BY
-- global aggregate without GROUP BY: exactly one row
CREATE VIEW totals AS
  SELECT COUNT(*) AS n_events, COUNT(amount_cents) AS with_amount, COUNT(DISTINCT customer) AS customers,
         COUNT(DISTINCT product) AS products, SUM(amount_cents) AS amount_sum,
         MIN(ts) AS first_ts, MAX(ts) AS last_ts, AVG(amount_cents) AS avg_amount
  FROM events;
-- global aggregate with FILTER clauses
CREATE VIEW totals_by_kind_filter AS
  SELECT COUNT(*) FILTER (WHERE kind = 'purchase') AS purchases,
         COUNT(*) FILTER (WHERE kind = 'refund') AS refunds,
         COUNT(*) FILTER (WHERE kind = 'view') AS views,
         SUM(amount_cents) FILTER (WHERE kind = 'purchase') AS purchased_cents,
         SUM(amount_cents) FILTER (WHERE kind = 'refund') AS refunded_cents,
         COUNT(DISTINCT customer) FILTER (WHERE kind = 'purchase') AS buyers,
         MAX(amount_cents) FILTER (WHERE kind = 'refund') AS largest_refund
  FROM events;
-- global aggregate over no rows: one row, COUNT 0, the others NULL
CREATE VIEW totals_of_nothing AS
  SELECT COUNT(*) AS n, COUNT(amount_cents) AS n_amount, SUM(amount_cents) AS total,
         MIN(ts) AS first_ts, MAX(ts) AS last_ts, AVG(amount_cents) AS mean
  FROM events WHERE kind = 'no such kind';
-- global aggregate with WHERE
CREATE VIEW purchase_totals AS
  SELECT COUNT(*) AS n, SUM(amount_cents) AS cents, MIN(amount_cents) AS smallest,
         MAX(amount_cents) AS largest, AVG(amount_cents) AS mean, COUNT(DISTINCT amount_cents) AS distinct_amounts
  FROM events WHERE kind = 'purchase' AND product < 900000;
-- global aggregate with HAVING (kept: one row)
CREATE VIEW refund_total_if_any AS
  SELECT COUNT(*) AS refunds, SUM(amount_cents) AS refunded
  FROM events WHERE kind = 'refund' HAVING COUNT(*) > 0;
-- COUNT(*) COUNT(x) COUNT(DISTINCT x) SUM MIN MAX AVG per kind
CREATE VIEW kind_summary AS
  SELECT kind, COUNT(*) AS n, COUNT(amount_cents) AS n_amount, COUNT(DISTINCT customer) AS customers,
         SUM(amount_cents) AS total, MIN(amount_cents) AS smallest, MAX(amount_cents) AS largest,
         AVG(amount_cents) AS mean, MIN(ts) AS first_ts, MAX(ts) AS last_ts
  FROM events GROUP BY kind;
-- MIN / MAX of strings and of booleans-as-CASE
CREATE VIEW product_kind_range AS
  SELECT product, MIN(kind) AS first_kind, MAX(kind) AS last_kind, COUNT(DISTINCT kind) AS kinds
  FROM events GROUP BY product;
-- GROUP BY several columns
CREATE VIEW customer_product_purchases AS
  SELECT customer, product, COUNT(*) AS n, SUM(amount_cents) AS cents, MAX(ts) AS last_ts
  FROM events WHERE kind = 'purchase' GROUP BY customer, product;
-- GROUP BY an expression repeated in SELECT
CREATE VIEW customer_mod_10 AS
  SELECT customer % 10 AS bucket, COUNT(*) AS n, COUNT(DISTINCT customer) AS customers
  FROM events GROUP BY customer % 10;
-- GROUP BY an output alias of an expression
CREATE VIEW product_bands AS
  SELECT product // 100 AS band, COUNT(*) FILTER (WHERE kind = 'purchase') AS purchases,
         SUM(amount_cents) FILTER (WHERE kind = 'purchase') AS cents
  FROM events GROUP BY band;
-- GROUP BY a name that is both an input column and an output alias: DuckDB binds the input column
CREATE VIEW group_by_shadowed_alias AS
  SELECT product // 100000 AS product, kind, COUNT(*) AS n
  FROM events WHERE kind = 'refund' GROUP BY product, kind;
-- GROUP BY alias mixed with a column, aggregates of expressions
CREATE VIEW kind_hour_of_day AS
  SELECT kind, (ts // 3600000) % 24 AS hour_of_day, COUNT(*) AS n, SUM(amount_cents * 2) AS double_cents,
         MAX(length(kind) + product % 3) AS odd_max
  FROM events GROUP BY kind, hour_of_day;
-- AVG of BIGINT (DOUBLE result) and arithmetic between aggregates
CREATE VIEW product_averages AS
  SELECT product, AVG(amount_cents) AS avg_cents, SUM(amount_cents) / COUNT(*) AS mean_by_hand,
         SUM(amount_cents) // COUNT(*) AS int_mean, MAX(amount_cents) - MIN(amount_cents) AS spread
  FROM events WHERE kind = 'purchase' GROUP BY product;
-- HAVING on COUNT(*)
CREATE VIEW repeat_buyers AS
  SELECT customer, COUNT(*) AS purchases, SUM(amount_cents) AS cents
  FROM events WHERE kind = 'purchase' GROUP BY customer HAVING COUNT(*) >= 4;
-- HAVING with AND/OR over several aggregates and a FILTER
CREATE VIEW refunded_products AS
  SELECT product, COUNT(*) FILTER (WHERE kind = 'refund') AS refunds, SUM(amount_cents) AS cents
  FROM events WHERE kind IN ('purchase', 'refund') GROUP BY product
  HAVING COUNT(*) FILTER (WHERE kind = 'refund') >= 2 OR (SUM(amount_cents) > 100000 AND COUNT(*) > 10);
-- HAVING on an aggregate not in the SELECT list
CREATE VIEW busy_viewers AS
  SELECT customer, COUNT(DISTINCT product) AS products_viewed
  FROM events WHERE kind = 'view' GROUP BY customer HAVING MAX(ts) - MIN(ts) > 86400000 AND COUNT(*) >= 12;
-- COUNT(DISTINCT x) per group
CREATE VIEW product_reach AS
  SELECT product, COUNT(DISTINCT customer) AS customers, COUNT(DISTINCT kind) AS kinds, COUNT(*) AS n
  FROM events GROUP BY product;

-- ===================================================================== time functions
-- epoch_ms(ts) as an output column (TIMESTAMP text, trailing zeros of milliseconds trimmed)
CREATE VIEW refund_times AS
  SELECT ts, epoch_ms(ts) AS at_time, customer, product FROM events WHERE kind = 'refund';
-- CAST(epoch_ms(ts) AS DATE) as a grouping key (DATE text)
CREATE VIEW events_per_date AS
  SELECT CAST(epoch_ms(ts) AS DATE) AS event_date, COUNT(*) AS n, COUNT(*) FILTER (WHERE kind = 'purchase') AS purchases
  FROM events GROUP BY event_date;
-- date_trunc('hour', ...) window
CREATE VIEW events_per_hour_trunc AS
  SELECT date_trunc('hour', epoch_ms(ts)) AS hour, COUNT(*) AS n, SUM(amount_cents) AS cents
  FROM events GROUP BY hour;
-- date_trunc('day', ...) window
CREATE VIEW revenue_per_day_trunc AS
  SELECT date_trunc('day', epoch_ms(ts)) AS day_start,
         SUM(CASE kind WHEN 'purchase' THEN amount_cents WHEN 'refund' THEN -amount_cents ELSE 0 END) AS net_cents
  FROM events GROUP BY day_start;
-- date_trunc('minute', ...) window over purchases
CREATE VIEW purchases_per_minute_trunc AS
  SELECT date_trunc('minute', epoch_ms(ts)) AS minute_start, COUNT(*) AS n, SUM(amount_cents) AS cents
  FROM events WHERE kind = 'purchase' GROUP BY minute_start;
-- strftime with %Y %m %d %H %M %S
CREATE VIEW refund_strftime AS
  SELECT ts, strftime(epoch_ms(ts), '%Y-%m-%d %H:%M:%S') AS stamp, strftime(epoch_ms(ts), '%H:%M') AS hhmm,
         strftime(epoch_ms(ts), '%Y%m%d') AS ymd, strftime(epoch_ms(ts), 'day %d, second %S') AS text_and_fields
  FROM events WHERE kind = 'refund';
-- strftime as a grouping key (hourly)
CREATE VIEW events_per_hour_strftime AS
  SELECT strftime(epoch_ms(ts), '%Y-%m-%dT%H') AS hour, COUNT(*) FILTER (WHERE kind = 'view') AS views,
         COUNT(*) FILTER (WHERE kind <> 'view') AS money_events
  FROM events GROUP BY hour;
-- extract(year / month / day / hour / minute FROM ...)
CREATE VIEW extracted_fields AS
  SELECT extract(year FROM epoch_ms(ts)) AS y, extract(month FROM epoch_ms(ts)) AS mo,
         extract(day FROM epoch_ms(ts)) AS d, extract(hour FROM epoch_ms(ts)) AS h, COUNT(*) AS n
  FROM events GROUP BY y, mo, d, h;
-- extract(minute ...) in a grouping key and in WHERE
CREATE VIEW minute_of_hour AS
  SELECT extract(minute FROM epoch_ms(ts)) AS minute_of_hour, COUNT(*) AS n
  FROM events WHERE extract(hour FROM epoch_ms(ts)) BETWEEN 9 AND 17 GROUP BY minute_of_hour;
-- time_bucket(INTERVAL '1 minute', ...)
CREATE VIEW purchases_per_minute_bucket AS
  SELECT time_bucket(INTERVAL '1 minute', epoch_ms(ts)) AS bucket, COUNT(*) AS n, SUM(amount_cents) AS cents
  FROM events WHERE kind = 'purchase' GROUP BY bucket;
-- time_bucket(INTERVAL '5 minutes', ...)
CREATE VIEW events_per_5_minutes AS
  SELECT time_bucket(INTERVAL '5 minutes', epoch_ms(ts)) AS bucket, COUNT(*) AS n,
         COUNT(DISTINCT customer) AS customers
  FROM events GROUP BY bucket;
-- time_bucket(INTERVAL '1 hour', ...)
CREATE VIEW revenue_per_hour_bucket AS
  SELECT time_bucket(INTERVAL '1 hour', epoch_ms(ts)) AS bucket,
         SUM(CASE kind WHEN 'purchase' THEN amount_cents ELSE -amount_cents END) AS net_cents
  FROM events WHERE kind IN ('purchase', 'refund') GROUP BY bucket;
-- tumbling 5-minute window by arithmetic, several FILTERs
CREATE VIEW events_per_5_minutes_arith AS
  SELECT ts - ts % 300000 AS window_start, ts - ts % 300000 + 300000 AS window_end,
         COUNT(*) AS n, COUNT(*) FILTER (WHERE kind = 'purchase') AS purchases,
         SUM(amount_cents) FILTER (WHERE kind = 'purchase') AS purchase_cents
  FROM events GROUP BY window_start, window_end;
-- tumbling hourly window by arithmetic per kind
CREATE VIEW kind_per_hour_arith AS
  SELECT ts - ts % 3600000 AS hour_start, kind, COUNT(*) AS n
  FROM events GROUP BY hour_start, kind;
-- tumbling minute window per product (GROUP BY the expression itself)
CREATE VIEW product_minute_purchases AS
  SELECT product, ts - ts % 60000 AS minute, COUNT(*) AS n
  FROM events WHERE kind = 'purchase' GROUP BY product, ts - ts % 60000;

-- ===================================================================== subqueries in FROM, CTEs
-- subquery in FROM: histogram of customer spend
CREATE VIEW spend_histogram AS
  SELECT CASE WHEN spend < 0 THEN 'negative' WHEN spend < 5000 THEN 'low'
              WHEN spend < 20000 THEN 'mid' ELSE 'high' END AS band,
         COUNT(*) AS customers, SUM(spend) AS spend_cents
  FROM (SELECT customer, SUM(CASE kind WHEN 'purchase' THEN amount_cents ELSE -amount_cents END) AS spend
        FROM events WHERE kind IN ('purchase', 'refund') GROUP BY customer) AS s
  GROUP BY band;
-- subquery in FROM with WHERE outside on an aggregate of the inside
CREATE VIEW multi_product_customers AS
  SELECT customer, n_products, n_events
  FROM (SELECT customer, COUNT(DISTINCT product) AS n_products, COUNT(*) AS n_events
        FROM events WHERE kind = 'purchase' GROUP BY customer) AS t
  WHERE n_products >= 3;
-- nested subqueries in FROM, aggregate of an aggregate
CREATE VIEW purchases_per_customer_distribution AS
  SELECT purchases, COUNT(*) AS customers
  FROM (SELECT customer, COUNT(*) AS purchases
        FROM (SELECT customer, kind FROM events WHERE kind = 'purchase') AS p
        GROUP BY customer) AS c
  GROUP BY purchases;
-- subquery in FROM: global aggregate over per-minute counts
CREATE VIEW minute_load AS
  SELECT COUNT(*) AS minutes, MAX(n) AS peak, MIN(n) AS trough, AVG(n) AS mean, SUM(n) AS n_events
  FROM (SELECT ts - ts % 60000 AS minute, COUNT(*) AS n FROM events GROUP BY minute) AS m;
-- WITH: one CTE
CREATE VIEW daily_buyers AS
  WITH p AS (SELECT strftime(epoch_ms(ts), '%Y-%m-%d') AS day, customer FROM events WHERE kind = 'purchase')
  SELECT day, COUNT(*) AS purchases, COUNT(DISTINCT customer) AS buyers FROM p GROUP BY day;
-- WITH: two CTEs joined
CREATE VIEW product_conversion AS
  WITH v AS (SELECT product, COUNT(*) AS views FROM events WHERE kind = 'view' GROUP BY product),
       b AS (SELECT product, COUNT(*) AS buys FROM events WHERE kind = 'purchase' GROUP BY product)
  SELECT v.product AS product, v.views AS views, b.buys AS buys, b.buys / v.views AS buys_per_view
  FROM v INNER JOIN b ON v.product = b.product;
-- WITH: a CTE reading another CTE
CREATE VIEW spend_band_counts AS
  WITH spend AS (SELECT customer, SUM(amount_cents) AS cents FROM events WHERE kind = 'purchase' GROUP BY customer),
       banded AS (SELECT customer, cents // 10000 AS band FROM spend)
  SELECT band, COUNT(*) AS customers FROM banded GROUP BY band;

-- ===================================================================== joins
-- INNER JOIN of event subqueries on customer+product with a BETWEEN time window (refund within a day)
CREATE VIEW refunds_within_a_day AS
  SELECT p.customer AS customer, p.product AS product, p.ts AS purchase_ts, r.ts AS refund_ts,
         r.ts - p.ts AS delay_ms, p.amount_cents AS purchased_cents, r.amount_cents AS refunded_cents
  FROM (SELECT ts, customer, product, amount_cents FROM events WHERE kind = 'purchase') AS p
  INNER JOIN (SELECT ts, customer, product, amount_cents FROM events WHERE kind = 'refund') AS r
    ON p.customer = r.customer AND p.product = r.product AND r.ts BETWEEN p.ts AND p.ts + 86400000;
-- INNER JOIN with a 10-minute window (may well be empty on some data)
CREATE VIEW refunds_within_10_minutes AS
  SELECT p.customer AS customer, p.product AS product, p.ts AS purchase_ts, r.ts AS refund_ts
  FROM (SELECT ts, customer, product FROM events WHERE kind = 'purchase') AS p
  JOIN (SELECT ts, customer, product FROM events WHERE kind = 'refund') AS r
    ON p.customer = r.customer AND p.product = r.product AND r.ts BETWEEN p.ts AND p.ts + 600000;
-- INNER JOIN: a view followed by a purchase of the same product within an hour
CREATE VIEW view_then_purchase AS
  SELECT v.customer AS customer, v.product AS product, v.ts AS view_ts, b.ts AS purchase_ts,
         b.amount_cents AS cents
  FROM (SELECT ts, customer, product FROM events WHERE kind = 'view') AS v
  INNER JOIN (SELECT ts, customer, product, amount_cents FROM events WHERE kind = 'purchase') AS b
    ON v.customer = b.customer AND v.product = b.product AND b.ts >= v.ts AND b.ts <= v.ts + 3600000;
-- LEFT JOIN of event subqueries with a time window: every refund, its earlier purchase if any
CREATE VIEW refunds_with_purchase AS
  SELECT r.ts AS refund_ts, r.customer AS customer, r.product AS product, r.amount_cents AS refunded_cents,
         p.ts AS purchase_ts, p.amount_cents AS purchased_cents, p.ts IS NULL AS orphan
  FROM (SELECT ts, customer, product, amount_cents FROM events WHERE kind = 'refund') AS r
  LEFT JOIN (SELECT ts, customer, product, amount_cents FROM events WHERE kind = 'purchase') AS p
    ON r.customer = p.customer AND r.product = p.product AND p.ts BETWEEN r.ts - 259200000 AND r.ts;
-- LEFT JOIN, then GROUP BY over the joined rows (COUNT of the nullable side)
CREATE VIEW purchases_refund_counts AS
  SELECT p.product AS product, COUNT(*) AS purchases, COUNT(r.ts) AS refunds_matched,
         COALESCE(SUM(r.amount_cents), 0) AS refunded_cents
  FROM (SELECT ts, customer, product FROM events WHERE kind = 'purchase') AS p
  LEFT JOIN (SELECT ts, customer, product, amount_cents FROM events WHERE kind = 'refund') AS r
    ON p.customer = r.customer AND p.product = r.product AND r.ts BETWEEN p.ts AND p.ts + 604800000
  GROUP BY p.product;
-- INNER JOIN of aggregated subqueries on customer
CREATE VIEW customer_views_and_spend AS
  SELECT a.customer AS customer, a.views AS views, b.purchases AS purchases, b.cents AS cents
  FROM (SELECT customer, COUNT(*) AS views FROM events WHERE kind = 'view' GROUP BY customer) AS a
  JOIN (SELECT customer, COUNT(*) AS purchases, SUM(amount_cents) AS cents
        FROM events WHERE kind = 'purchase' GROUP BY customer) AS b
    ON a.customer = b.customer;
-- INNER JOIN between views (product_stats and product_reach)
CREATE VIEW product_stats_with_reach AS
  SELECT s.product AS product, s.purchases AS purchases, s.refunds AS refunds, s.revenue_cents AS revenue_cents,
         r.customers AS customers, r.n AS n_events
  FROM product_stats AS s INNER JOIN product_reach AS r ON s.product = r.product;
-- LEFT JOIN between views (customer_views_amount may lack a spender)
CREATE VIEW customer_spend_with_views AS
  SELECT c.customer AS customer, c.spend_cents AS spend_cents, v.n AS views, COALESCE(v.n, 0) AS views_or_zero
  FROM customer_spend AS c LEFT JOIN customer_views_amount AS v ON c.customer = v.customer;
-- LEFT JOIN between a view and an aggregated subquery, with an extra ON predicate
CREATE VIEW product_stats_big_refunds AS
  SELECT s.product AS product, s.revenue_cents AS revenue_cents, b.big_refunds AS big_refunds
  FROM product_stats AS s
  LEFT JOIN (SELECT product, COUNT(*) AS big_refunds FROM big_refunds GROUP BY product) AS b
    ON s.product = b.product AND b.big_refunds >= 1;
-- three-way INNER JOIN of aggregated subqueries
CREATE VIEW customer_three_way AS
  SELECT v.customer AS customer, v.n AS views, p.n AS purchases, r.n AS refunds
  FROM (SELECT customer, COUNT(*) AS n FROM events WHERE kind = 'view' GROUP BY customer) AS v
  JOIN (SELECT customer, COUNT(*) AS n FROM events WHERE kind = 'purchase' GROUP BY customer) AS p
    ON v.customer = p.customer
  JOIN (SELECT customer, COUNT(*) AS n FROM events WHERE kind = 'refund' GROUP BY customer) AS r
    ON p.customer = r.customer;

-- ===================================================================== views over views
-- view over a view: aggregate of revenue_by_day
CREATE VIEW revenue_overall AS
  SELECT COUNT(*) AS days, SUM(revenue_cents) AS total_cents, MAX(revenue_cents) AS best_day_cents
  FROM revenue_by_day;
-- view over a view with WHERE
CREATE VIEW products_with_refunds AS
  SELECT product, purchases, refunds, revenue_cents, refunds * 100 // (purchases + refunds) AS refund_pct
  FROM product_stats WHERE refunds > 0;
-- view over a view: GROUP BY over a view's output
CREATE VIEW spenders_by_sign AS
  SELECT CASE WHEN spend_cents > 0 THEN 'positive' WHEN spend_cents = 0 THEN 'zero' ELSE 'negative' END AS sign,
         COUNT(*) AS customers, SUM(spend_cents) AS cents
  FROM customer_spend GROUP BY sign;
-- view over a view over a view (spend_histogram over customer rows)
CREATE VIEW spend_histogram_share AS
  SELECT h.band AS band, h.customers AS customers, h.customers * 100 / t.all_customers AS pct
  FROM (SELECT 1 AS k, band, customers FROM spend_histogram) AS h
  INNER JOIN (SELECT 1 AS k, SUM(customers) AS all_customers FROM spend_histogram) AS t ON h.k = t.k;
-- view over events_per_minute: per-hour roll-up of a minute window
CREATE VIEW events_per_hour_rollup AS
  SELECT minute - minute % 3600000 AS hour, SUM(purchase) AS purchases, SUM(refund) AS refunds,
         SUM("view") AS views, COUNT(*) AS active_minutes
  FROM events_per_minute GROUP BY hour;
-- view over a join view
CREATE VIEW refund_delay_stats AS
  SELECT COUNT(*) AS pairs, MIN(delay_ms) AS fastest_ms, MAX(delay_ms) AS slowest_ms, AVG(delay_ms) AS mean_ms
  FROM refunds_within_a_day;

-- ===================================================================== ranked views
-- ranked: top customers by spend, ties by customer
CREATE VIEW top_customers AS
  SELECT customer, spend_cents FROM customer_spend ORDER BY spend_cents DESC, customer ASC LIMIT 10;
-- ranked: bottom customers (most refunded) ascending
CREATE VIEW most_refunded_customers AS
  SELECT customer, spend_cents FROM customer_spend ORDER BY spend_cents ASC, customer DESC LIMIT 5;
-- ranked: busiest minutes, ties by window start
CREATE VIEW busiest_minutes AS
  SELECT ts - ts % 60000 AS minute, COUNT(*) AS n
  FROM events GROUP BY minute ORDER BY n DESC, minute ASC LIMIT 7;
-- ranked: largest purchases over raw rows (ordered by every column: a total order up to identical rows)
CREATE VIEW largest_purchases AS
  SELECT ts, customer, product, amount_cents
  FROM events WHERE kind = 'purchase'
  ORDER BY amount_cents DESC, ts ASC, customer ASC, product ASC LIMIT 15;
-- ranked: latest refunds, ordering by an expression
CREATE VIEW latest_refunds AS
  SELECT ts, customer, product, amount_cents, epoch_ms(ts) AS at_time
  FROM events WHERE kind = 'refund'
  ORDER BY ts DESC, customer DESC, product DESC, amount_cents DESC LIMIT 12;
-- ranked over a join view, LIMIT 1
CREATE VIEW most_viewed_purchased_product AS
  SELECT product, views, buys FROM product_conversion ORDER BY views DESC, buys DESC, product ASC LIMIT 1;
-- ranked by a computed ratio over a view
CREATE VIEW best_converting_products AS
  SELECT product, views, buys, buys_per_view
  FROM product_conversion WHERE views >= 20
  ORDER BY buys_per_view DESC, product ASC LIMIT 10;

-- ===================================================================== ROW_NUMBER
-- ROW_NUMBER per customer over an aggregated subquery: top 3 products by spend
CREATE VIEW top3_products_per_customer AS
  SELECT customer, product, cents, rn
  FROM (SELECT customer, product, cents,
               ROW_NUMBER() OVER (PARTITION BY customer ORDER BY cents DESC, product ASC) AS rn
        FROM (SELECT customer, product, SUM(amount_cents) AS cents
              FROM events WHERE kind = 'purchase' GROUP BY customer, product) AS cp) AS ranked
  WHERE rn <= 3;
-- ROW_NUMBER per customer over raw rows: first purchase (rn = 1)
CREATE VIEW first_purchase_per_customer AS
  SELECT customer, ts, product, amount_cents
  FROM (SELECT customer, ts, product, amount_cents,
               ROW_NUMBER() OVER (PARTITION BY customer ORDER BY ts ASC, product ASC, amount_cents ASC) AS rn
        FROM events WHERE kind = 'purchase') AS t
  WHERE rn = 1;
-- ROW_NUMBER per product over a view: two biggest buyers of each product
CREATE VIEW top2_buyers_per_product AS
  SELECT product, customer, cents, rn AS buyer_rank
  FROM (SELECT product, customer, cents,
               ROW_NUMBER() OVER (PARTITION BY product ORDER BY cents DESC, customer ASC) AS rn
        FROM customer_product_purchases) AS t
  WHERE rn <= 2;
-- ROW_NUMBER per day: top 5 products of each day
CREATE VIEW top5_products_per_day AS
  WITH daily AS (SELECT strftime(epoch_ms(ts), '%Y-%m-%d') AS day, product, COUNT(*) AS n
                 FROM events WHERE kind = 'purchase' GROUP BY day, product)
  SELECT day, product, n, rn
  FROM (SELECT day, product, n, ROW_NUMBER() OVER (PARTITION BY day ORDER BY n DESC, product ASC) AS rn
        FROM daily) AS r
  WHERE rn <= 5;
-- ROW_NUMBER over several partition keys: latest 2 views of each customer and product
CREATE VIEW last_two_views AS
  SELECT customer, product, ts, rn
  FROM (SELECT customer, product, ts,
               ROW_NUMBER() OVER (PARTITION BY customer, product ORDER BY ts DESC) AS rn
        FROM events WHERE kind = 'view') AS t
  WHERE rn <= 2 AND customer % 50 = 0;
-- ROW_NUMBER without PARTITION BY, filtered by a range of ranks
CREATE VIEW ranks_4_to_8_by_revenue AS
  SELECT product, revenue_cents, rn
  FROM (SELECT product, revenue_cents, ROW_NUMBER() OVER (ORDER BY revenue_cents DESC, product ASC) AS rn
        FROM product_stats) AS t
  WHERE rn <= 8 AND rn >= 4;

-- ===================================================================== odds and ends
-- integer division and modulo by a divisor that can be zero (gives NULL, with error_on_division_by_zero=false)
CREATE VIEW division_by_maybe_zero AS
  SELECT product % 3 AS divisor, COUNT(*) AS n, SUM(amount_cents // (product % 3)) AS div_sum,
         SUM(amount_cents % (product % 3)) AS mod_sum, COUNT(amount_cents // (product % 3)) AS div_count
  FROM events WHERE kind = 'purchase' AND product < 900000 GROUP BY divisor;
-- constant columns and literal expressions beside aggregates
CREATE VIEW constants AS
  SELECT kind, 42 AS answer, 'fixed' AS label, 1 + 2 * 3 AS seven, (1 + 2) * 3 AS nine, 10 // 4 AS two,
         10 % 4 AS also_two, TRUE AS yes, NULL AS nothing, COUNT(*) AS n
  FROM events GROUP BY kind;
-- SELECT without aggregates over a subquery, renaming and computing
CREATE VIEW refund_ratio_per_product AS
  SELECT product, refunds, purchases, CAST(refunds AS DOUBLE) / purchases AS refund_ratio
  FROM (SELECT product, COUNT(*) FILTER (WHERE kind = 'refund') AS refunds,
               COUNT(*) FILTER (WHERE kind = 'purchase') AS purchases
        FROM events GROUP BY product) AS t
  WHERE purchases > 0;
-- WHERE with a parenthesised OR of BETWEEN and IN, grouped by two expressions
CREATE VIEW weekday_kinds AS
  SELECT strftime(epoch_ms(ts), '%Y-%m') AS year_month, kind, COUNT(*) AS n
  FROM events
  WHERE (extract(day FROM epoch_ms(ts)) BETWEEN 1 AND 2 OR extract(hour FROM epoch_ms(ts)) IN (0, 12, 23))
  GROUP BY year_month, kind;

-- ===================================================================== more casts, strings, time functions
-- x::BIGINT on integer expressions as grouping keys, ::VARCHAR in output
CREATE VIEW day_numbers AS
  SELECT (ts // 86400000)::BIGINT AS day_number, kind::VARCHAR AS kind_text,
         COUNT(*)::BIGINT AS n, SUM(amount_cents)::BIGINT AS cents
  FROM events GROUP BY day_number, kind_text;
-- CAST(... AS BIGINT) of a DOUBLE average (rounds) and of extract
CREATE VIEW product_avg_rounded AS
  SELECT product, CAST(AVG(amount_cents) AS BIGINT) AS avg_rounded, AVG(amount_cents)::BIGINT AS avg_rounded_too,
         CAST(extract(hour FROM epoch_ms(MIN(ts))) AS BIGINT) AS first_hour
  FROM events WHERE kind = 'purchase' GROUP BY product;
-- concat in a grouping key, with numbers and NULL-free parts
CREATE VIEW kind_product_labels AS
  SELECT concat(kind, '#', product % 5) AS label, COUNT(*) AS n
  FROM events GROUP BY label;
-- concat and || over a view's columns
CREATE VIEW product_stats_text AS
  SELECT product, concat(purchases, ' bought / ', refunds, ' returned') AS summary,
         CAST(product AS VARCHAR) || ':' || CAST(revenue_cents AS VARCHAR) AS product_revenue
  FROM product_stats;
-- lower / upper / LIKE / substr in WHERE
CREATE VIEW upper_like_filter AS
  SELECT customer, COUNT(*) AS n, MAX(upper(kind)) AS max_kind_upper
  FROM events
  WHERE upper(kind) LIKE 'P%' OR lower(substr(kind, 1, 2)) = 're'
  GROUP BY customer;
-- substr over a number rendered as text, length of a number's text
CREATE VIEW ts_text_prefix AS
  SELECT substr(CAST(ts AS VARCHAR), 1, 6) AS ts_prefix, length(CAST(ts AS VARCHAR)) AS ts_digits, COUNT(*) AS n
  FROM events GROUP BY ts_prefix, ts_digits;
-- IS NOT NULL in WHERE and in FILTER
CREATE VIEW amount_presence_per_product AS
  SELECT product, COUNT(*) FILTER (WHERE amount_cents IS NOT NULL AND amount_cents > 0) AS paid,
         COUNT(*) FILTER (WHERE amount_cents IS NULL OR amount_cents = 0) AS unpaid
  FROM events WHERE customer IS NOT NULL GROUP BY product;
-- CAST(epoch_ms(ts) AS DATE) inside MIN / MAX per customer (DATE results)
CREATE VIEW customer_purchase_dates AS
  SELECT customer, MIN(CAST(epoch_ms(ts) AS DATE)) AS first_date, MAX(CAST(epoch_ms(ts) AS DATE)) AS last_date,
         COUNT(DISTINCT CAST(epoch_ms(ts) AS DATE)) AS active_days
  FROM events WHERE kind = 'purchase' GROUP BY customer;
-- CAST(epoch_ms(ts) AS DATE) with a kind split
CREATE VIEW kind_per_date AS
  SELECT CAST(epoch_ms(ts) AS DATE) AS on_date, kind, COUNT(*) AS n, SUM(amount_cents) AS cents
  FROM events GROUP BY on_date, kind;
-- date_trunc('hour', ...) per kind
CREATE VIEW kind_per_hour_trunc AS
  SELECT date_trunc('hour', epoch_ms(ts)) AS hour_start, kind, COUNT(*) AS n
  FROM events GROUP BY hour_start, kind;
-- date_trunc('day', ...) with COUNT(DISTINCT)
CREATE VIEW daily_distinct_trunc AS
  SELECT date_trunc('day', epoch_ms(ts)) AS day_start, COUNT(DISTINCT customer) AS customers,
         COUNT(DISTINCT product) AS products
  FROM events GROUP BY day_start;
-- date_trunc('minute', ...) in a ranked view
CREATE VIEW busiest_minutes_trunc AS
  SELECT date_trunc('minute', epoch_ms(ts)) AS minute_start, COUNT(*) AS n
  FROM events GROUP BY minute_start ORDER BY n DESC, minute_start DESC LIMIT 5;
-- time_bucket(INTERVAL '1 minute', ...) per kind
CREATE VIEW kind_per_minute_bucket AS
  SELECT time_bucket(INTERVAL '1 minute', epoch_ms(ts)) AS bucket, kind, COUNT(*) AS n
  FROM events WHERE kind <> 'view' GROUP BY bucket, kind;
-- time_bucket(INTERVAL '5 minutes', ...) over refunds with SUM
CREATE VIEW refunds_per_5_minutes_bucket AS
  SELECT time_bucket(INTERVAL '5 minutes', epoch_ms(ts)) AS bucket, COUNT(*) AS refunds, SUM(amount_cents) AS cents
  FROM events WHERE kind = 'refund' GROUP BY bucket;
-- time_bucket(INTERVAL '1 hour', ...) with distinct customers and FILTER
CREATE VIEW hourly_customers_bucket AS
  SELECT time_bucket(INTERVAL '1 hour', epoch_ms(ts)) AS bucket, COUNT(DISTINCT customer) AS customers,
         COUNT(DISTINCT customer) FILTER (WHERE kind = 'purchase') AS buyers
  FROM events GROUP BY bucket;
-- strftime with %M and %S as grouping keys
CREATE VIEW second_of_minute AS
  SELECT strftime(epoch_ms(ts), '%S') AS second_text, COUNT(*) AS n
  FROM events WHERE strftime(epoch_ms(ts), '%M') IN ('00', '15', '30', '45') GROUP BY second_text;
-- extract in a WHERE and a CASE over a window of ts arithmetic
CREATE VIEW night_and_day AS
  SELECT CASE WHEN extract(hour FROM epoch_ms(ts)) < 6 THEN 'night' ELSE 'day' END AS part,
         extract(month FROM epoch_ms(ts)) AS month_number, COUNT(*) AS n
  FROM events WHERE extract(year FROM epoch_ms(ts)) >= 2026 GROUP BY part, month_number;
-- DISTINCT over a time expression and a string function
CREATE VIEW distinct_day_kind AS
  SELECT DISTINCT strftime(epoch_ms(ts), '%Y-%m-%d') AS day, upper(kind) AS kind_upper FROM events;
-- ranked view over a tumbling window (arithmetic) with a FILTER aggregate
CREATE VIEW top_refund_minutes AS
  SELECT ts - ts % 60000 AS minute, COUNT(*) FILTER (WHERE kind = 'refund') AS refunds, COUNT(*) AS n
  FROM events GROUP BY minute HAVING COUNT(*) FILTER (WHERE kind = 'refund') > 0
  ORDER BY refunds DESC, n DESC, minute ASC LIMIT 8;
-- mod() as DuckDB has it, and a comma join whose WHERE equality is its key (NEXMark q4's form)
CREATE VIEW product_mod AS
  SELECT mod(product, 7) AS m, COUNT(*) AS n FROM events WHERE mod(customer, 3) = 1 GROUP BY m;
CREATE VIEW comma_join AS
  SELECT p.customer, COUNT(*) AS n
  FROM events AS p, events AS r
  WHERE p.customer = r.customer AND p.kind = 'purchase' AND r.kind = 'refund' AND r.ts >= p.ts
  GROUP BY p.customer;
