-- The views of tests/sql/windows.sql in DuckDB's SQL: a tumbling window by arithmetic, a
-- hopping window as one row per (event, window) from a join with range().
CREATE VIEW tumbling_minutes AS
  SELECT epoch_ms(ts - ts % 60000) AS window_start, epoch_ms(ts - ts % 60000 + 60000) AS window_end,
         COUNT(*) AS n, SUM(amount_cents) AS cents
  FROM events GROUP BY window_start, window_end;
CREATE VIEW tumbling_kinds AS
  SELECT kind, epoch_ms(ts - ts % 600000) AS window_start, COUNT(*) AS n
  FROM events WHERE kind <> 'view' GROUP BY kind, window_start;
CREATE VIEW hopping_revenue AS
  SELECT epoch_ms(ts - ts % 60000 - k * 60000) AS window_start,
         epoch_ms(ts - ts % 60000 - k * 60000 + 300000) AS window_end,
         SUM(CASE kind WHEN 'purchase' THEN amount_cents ELSE -amount_cents END) AS revenue_cents
  FROM events CROSS JOIN (SELECT range AS k FROM range(5)) AS windows
  WHERE kind IN ('purchase', 'refund')
  GROUP BY window_start, window_end;
CREATE VIEW purchases AS SELECT ts, customer, amount_cents FROM events WHERE kind = 'purchase';
CREATE VIEW busiest_hop AS
  SELECT epoch_ms(ts - ts % 30000 - k * 30000) AS window_start, COUNT(*) AS n
  FROM purchases CROSS JOIN (SELECT range AS k FROM range(4)) AS windows
  GROUP BY window_start
  ORDER BY n DESC, window_start LIMIT 3;
-- SESSION: a row starts a new session when it is at least the gap after the previous row of
-- its partition (by time); a session ends at its last row plus the gap.
CREATE VIEW customer_sessions_sql AS
  WITH marked AS (
    SELECT *, CASE WHEN ts - LAG(ts) OVER (PARTITION BY customer ORDER BY ts) < 120000 THEN 0 ELSE 1 END AS fresh
    FROM events),
  numbered AS (
    SELECT *, SUM(fresh) OVER (PARTITION BY customer ORDER BY ts ROWS UNBOUNDED PRECEDING) AS session
    FROM marked),
  bounded AS (
    SELECT *, MIN(ts) OVER (PARTITION BY customer, session) AS first_ts,
              MAX(ts) OVER (PARTITION BY customer, session) AS last_ts
    FROM numbered)
  SELECT customer, epoch_ms(first_ts) AS window_start, epoch_ms(last_ts + 120000) AS window_end,
         COUNT(*) AS n, SUM(amount_cents) AS cents
  FROM bounded GROUP BY customer, window_start, window_end;
CREATE VIEW quiet_gaps AS
  WITH marked AS (
    SELECT *, CASE WHEN ts - LAG(ts) OVER (ORDER BY ts) < 5000 THEN 0 ELSE 1 END AS fresh
    FROM events),
  numbered AS (
    SELECT *, SUM(fresh) OVER (ORDER BY ts ROWS UNBOUNDED PRECEDING) AS session FROM marked),
  bounded AS (
    SELECT *, MIN(ts) OVER (PARTITION BY session) AS first_ts, MAX(ts) OVER (PARTITION BY session) AS last_ts
    FROM numbered)
  SELECT epoch_ms(first_ts) AS window_start, epoch_ms(last_ts + 5000) AS window_end, COUNT(*) AS n
  FROM bounded WHERE kind = 'purchase' GROUP BY window_start, window_end;
CREATE VIEW product_sessions AS
  WITH marked AS (
    SELECT *, CASE WHEN ts - LAG(ts) OVER (PARTITION BY customer, amount_cents ORDER BY ts) < 60000 THEN 0 ELSE 1 END AS fresh
    FROM purchases),
  numbered AS (
    SELECT *, SUM(fresh) OVER (PARTITION BY customer, amount_cents ORDER BY ts ROWS UNBOUNDED PRECEDING) AS session
    FROM marked),
  bounded AS (
    SELECT *, MIN(ts) OVER (PARTITION BY customer, amount_cents, session) AS first_ts FROM numbered)
  SELECT customer, epoch_ms(first_ts) AS window_start, COUNT(*) AS n
  FROM bounded GROUP BY customer, window_start;
