-- Flink's window table functions, as lambdaflow runs them; tests/sql/windows_duckdb.sql holds
-- the same views in DuckDB's SQL (which has no TUMBLE or HOP) for the oracle.
-- TUMBLE, with Flink's `TABLE name` argument
CREATE VIEW tumbling_minutes AS
  SELECT window_start, window_end, COUNT(*) AS n, SUM(amount_cents) AS cents
  FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
  GROUP BY window_start, window_end;
-- TUMBLE without TABLE(...), an alias, a filter, and a grouping key beside the window
CREATE VIEW tumbling_kinds AS
  SELECT w.kind, w.window_start, COUNT(*) AS n
  FROM TUMBLE(events, DESCRIPTOR(ts), INTERVAL '10' MINUTES) AS w
  WHERE w.kind <> 'view'
  GROUP BY w.kind, w.window_start;
-- HOP: 5-minute windows every minute (slide first, then size, as in Flink)
CREATE VIEW hopping_revenue AS
  SELECT window_start, window_end,
         SUM(CASE kind WHEN 'purchase' THEN amount_cents ELSE -amount_cents END) AS revenue_cents
  FROM TABLE(HOP(TABLE events, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '5' MINUTE))
  WHERE kind IN ('purchase', 'refund')
  GROUP BY window_start, window_end;
-- HOP over a view, with the top window by count
CREATE VIEW purchases AS SELECT ts, customer, amount_cents FROM events WHERE kind = 'purchase';
CREATE VIEW busiest_hop AS
  SELECT window_start, COUNT(*) AS n
  FROM TABLE(HOP(TABLE purchases, DESCRIPTOR(ts), INTERVAL '30' SECOND, INTERVAL '2' MINUTE))
  GROUP BY window_start
  ORDER BY n DESC, window_start LIMIT 3;
-- SESSION per customer (Flink's PARTITION BY), a 2-minute gap: a customer's sessions
CREATE VIEW customer_sessions_sql AS
  SELECT customer, window_start, window_end, COUNT(*) AS n, SUM(amount_cents) AS cents
  FROM TABLE(SESSION(TABLE events PARTITION BY customer, DESCRIPTOR(ts), INTERVAL '2' MINUTE))
  GROUP BY customer, window_start, window_end;
-- SESSION over every event (no partition), a 5-second gap, filtered after windowing
CREATE VIEW quiet_gaps AS
  SELECT window_start, window_end, COUNT(*) AS n
  FROM TABLE(SESSION(TABLE events, DESCRIPTOR(ts), INTERVAL '5' SECOND))
  WHERE kind = 'purchase'
  GROUP BY window_start, window_end;
-- SESSION partitioned by two columns, over a view
CREATE VIEW product_sessions AS
  SELECT customer, window_start, COUNT(*) AS n
  FROM TABLE(SESSION(TABLE purchases PARTITION BY (customer, amount_cents), DESCRIPTOR(ts), INTERVAL '1' MINUTE))
  GROUP BY customer, window_start;
