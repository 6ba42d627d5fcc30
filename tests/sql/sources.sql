-- Declared sources for the SQL tests over rows of a schema: a small NEXMark.
CREATE SOURCE person (id BIGINT NOT NULL, name VARCHAR, city VARCHAR, state VARCHAR,
                      dateTime BIGINT) WITH (event_time = 'dateTime');
CREATE SOURCE auction (id BIGINT NOT NULL, seller BIGINT, category BIGINT, reserve DOUBLE,
                       dateTime BIGINT, expires BIGINT) WITH (event_time = 'dateTime');
CREATE SOURCE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, urgent BOOLEAN,
                   dateTime BIGINT) WITH (event_time = 'dateTime');
