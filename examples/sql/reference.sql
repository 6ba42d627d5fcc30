CREATE VIEW revenue_by_day AS
  SELECT strftime(epoch_ms(ts), '%Y-%m-%d') AS day,
         SUM(CASE kind WHEN 'purchase' THEN amount_cents ELSE -amount_cents END) AS revenue_cents
  FROM events WHERE kind IN ('purchase', 'refund') GROUP BY day;
CREATE VIEW product_stats AS
  SELECT product, COUNT(*) FILTER (WHERE kind = 'purchase') AS purchases,
         COUNT(*) FILTER (WHERE kind = 'refund') AS refunds,
         SUM(CASE kind WHEN 'purchase' THEN amount_cents ELSE -amount_cents END) AS revenue_cents
  FROM events WHERE kind IN ('purchase', 'refund') GROUP BY product;
CREATE VIEW customer_spend AS
  SELECT customer, SUM(CASE kind WHEN 'purchase' THEN amount_cents ELSE -amount_cents END) AS spend_cents
  FROM events WHERE kind IN ('purchase', 'refund') GROUP BY customer;
CREATE VIEW events_per_minute AS
  SELECT ts - ts % 60000 AS minute, COUNT(*) FILTER (WHERE kind = 'purchase') AS purchase,
         COUNT(*) FILTER (WHERE kind = 'refund') AS refund, COUNT(*) FILTER (WHERE kind = 'view') AS "view"
  FROM events GROUP BY minute;
CREATE VIEW top_products AS
  SELECT product, SUM(CASE kind WHEN 'purchase' THEN amount_cents ELSE -amount_cents END) AS revenue_cents
  FROM events WHERE kind IN ('purchase', 'refund') GROUP BY product
  ORDER BY revenue_cents DESC, product ASC LIMIT 10;
